// Records every outgoing connection and name lookup the process attempts.
const fs = require('fs');
const net = require('net');
const dns = require('dns');
const out = process.env.TETHER_NET_LOG;
function note(kind, target) { fs.appendFileSync(out, JSON.stringify({kind, target: String(target)}) + '\n'); }
const connect = net.Socket.prototype.connect;
net.Socket.prototype.connect = function (...args) {
  let options = args[0];
  if (Array.isArray(options)) options = options[0];
  if (typeof options === 'object' && options !== null) note('connect', options.path || `${options.host || 'localhost'}:${options.port}`);
  else note('connect', `${args[1] || 'localhost'}:${args[0]}`);
  return connect.apply(this, args);
};
const lookup = dns.lookup;
dns.lookup = function (host, ...rest) { note('lookup', host); return lookup.call(this, host, ...rest); };
const plookup = dns.promises.lookup;
dns.promises.lookup = function (host, ...rest) { note('lookup', host); return plookup.call(this, host, ...rest); };
