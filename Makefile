# Set-up is two commands: `make serve` and `make test`. Each creates and reuses .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Tabby's editor agent, driven by the tests over LSP (node and npm come from the system).
TABBY_AGENT := $(VENV)/node/node_modules/tabby-agent/dist/cli.js
# axe-core, the accessibility checker the dashboard's browser tests run in its pages.
AXE_CORE := $(VENV)/node/node_modules/axe-core/axe.min.js
# The dashboard's browser tests use the system's Chromium (Playwright's own browser
# downloads are not used).
CHROMIUM := /usr/bin/chromium
# systemd's own check of the shipped unit (deploy/systemd), from the system's packages.
SYSTEMD_ANALYZE := /usr/bin/systemd-analyze
# The Node.js example's openai client, run by the tests against a real server.
NODE_EXAMPLE := examples/node/node_modules/openai/package.json
# llama.cpp's own server, for the side-by-side benchmark (bench/peer_server.py).
LLAMA_SERVER := build/llama.cpp/bin/llama-server
# llama.cpp is compiled for this machine's CPU, but without its AMX kernels: on a virtual
# machine whose CPU reports AMX (a Sapphire Rapids) they faulted on the first matrix
# product. Built without pip's wheel cache, which does not tell builds with other
# flags apart. The flags are x86's: compilers for other CPUs (an ARM laptop) refuse them.
ARCH ?= $(shell uname -m)
ifneq ($(filter x86_64 amd64 i386 i686,$(ARCH)),)
NO_AMX := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
LLAMA_CMAKE_ARGS := -DCMAKE_C_FLAGS='$(NO_AMX)' -DCMAKE_CXX_FLAGS='$(NO_AMX)'
endif
# llama-cpp-python's multimodal library (mtmd) is left out: tether never loads it, and it is
# a fifth of the build.
LLAMA_PYTHON_CMAKE_ARGS := $(LLAMA_CMAKE_ARGS) -DLLAVA_BUILD=OFF

.PHONY: serve test bench lint install eval-projects llama-server image

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	CMAKE_ARGS="$(LLAMA_PYTHON_CMAKE_ARGS) $${CMAKE_ARGS:-}" $(BIN)/python -m pip install --quiet --no-cache-dir \
		"$$(grep -o 'llama-cpp-python>=[^"]*' pyproject.toml)"
	$(BIN)/python -m pip install --quiet -e '.[embedded,check,test,bench]'
	$(BIN)/python -m pip install --quiet --no-deps -e examples/tether-example-plugin
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/tether serve

$(TABBY_AGENT): $(STAMP)
	npm install --prefix $(VENV)/node --no-audit --no-fund --loglevel=error tabby-agent@1.5.0

$(AXE_CORE): $(STAMP)
	npm install --prefix $(VENV)/node --no-audit --no-fund --loglevel=error axe-core@4.14.1
	touch $(AXE_CORE)

$(NODE_EXAMPLE): examples/node/package-lock.json
	npm ci --prefix examples/node --no-audit --no-fund --loglevel=error
	touch $(NODE_EXAMPLE)

$(CHROMIUM):
	apt-get install -y -q --no-install-recommends chromium || \
		{ apt-get update -q && apt-get install -y -q --no-install-recommends chromium; } || \
		{ echo "install Chromium from your system's packages (apt-get install chromium)"; exit 1; }

$(SYSTEMD_ANALYZE):
	apt-get install -y -q --no-install-recommends systemd || \
		{ apt-get update -q && apt-get install -y -q --no-install-recommends systemd; } || \
		{ echo "install systemd from your system's packages (apt-get install systemd)"; exit 1; }

test: $(STAMP) $(TABBY_AGENT) $(AXE_CORE) $(NODE_EXAMPLE) $(CHROMIUM) $(SYSTEMD_ANALYZE)
	$(BIN)/python -m pytest

bench: $(STAMP) $(LLAMA_SERVER)
	$(BIN)/python -m bench.run_all

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

# Three real projects for `tether eval project`, from their source distributions (which
# hold their tests): fetched here, at install time, never when tether runs.
EVAL_PROJECTS := inflection==0.5.1 toolz==1.2.0 semver==3.1.2
eval-projects: $(STAMP)
	mkdir -p $(VENV)/eval-projects
	$(BIN)/python -m pip download --quiet --no-deps --no-binary :all: -d $(VENV)/eval-projects $(EVAL_PROJECTS)
	cd $(VENV)/eval-projects && for f in *.tar.gz; do tar xzf $$f; done

# llama.cpp's own server, built from the llama.cpp source that the installed
# llama-cpp-python vendors, for bench/peer_server.py to compare against (not in `make test`).
llama-server: $(LLAMA_SERVER)

$(LLAMA_SERVER): $(STAMP)
	rm -rf build/llama.cpp && mkdir -p build/llama.cpp
	$(BIN)/python -m pip download --quiet --no-deps --no-binary :all: -d build/llama.cpp \
		"llama-cpp-python==$$($(BIN)/python -c 'import llama_cpp; print(llama_cpp.__version__)')"
	cd build/llama.cpp && tar xzf llama_cpp_python-*.tar.gz
	cmake -S build/llama.cpp/llama_cpp_python-*/vendor/llama.cpp -B build/llama.cpp/cmake \
		-DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
		-DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON -DBUILD_SHARED_LIBS=OFF \
		$(LLAMA_CMAKE_ARGS)
	cmake --build build/llama.cpp/cmake --target llama-server --parallel $$(nproc)
	mkdir -p build/llama.cpp/bin && cp build/llama.cpp/cmake/bin/llama-server $(LLAMA_SERVER)

# The container image, built and smoke-tested as a deployment runs it (needs a container
# engine; says so and exits 3 where there is none).
image:
	bash deploy/smoke-test.sh
