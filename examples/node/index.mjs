// tether through the official openai npm client: a streamed chat answer and a streamed
// fill-in-the-middle completion (the code before and after a cursor).
//
//   TETHER_URL=http://127.0.0.1:8421/v1 TETHER_TOKEN=$(tether token create \
//     --scopes chat,completions --ttl 1h) node index.mjs
//
// Prints one JSON line: the model, the chat answer and the text for the cursor.
import OpenAI from "openai";

const client = new OpenAI({
  baseURL: process.env.TETHER_URL ?? "http://127.0.0.1:8421/v1",
  apiKey: process.env.TETHER_TOKEN,
  maxRetries: 0,
});

async function main() {
  const model = (await client.models.list()).data[0].id;

  const chat = await client.chat.completions.create({
    model,
    stream: true,
    max_tokens: 48,
    messages: [{ role: "user", content: "Write a JavaScript function that adds two numbers." }],
  });
  let answer = "";
  for await (const chunk of chat) answer += chunk.choices[0]?.delta?.content ?? "";

  const fim = await client.completions.create({
    model,
    stream: true,
    max_tokens: 24,
    prompt: "function add(a, b) {\n  ",
    suffix: "\n}\n",
  });
  let middle = "";
  for await (const chunk of fim) middle += chunk.choices[0]?.text ?? "";

  console.log(JSON.stringify({ model, chat: answer, fim: middle }));
}

main().catch((error) => {
  // tether's errors come in the OpenAI shape: the client reads status and message.
  const status = error instanceof OpenAI.APIError ? ` (HTTP ${error.status})` : "";
  console.error(`error${status}: ${error.message}`);
  process.exit(1);
});
