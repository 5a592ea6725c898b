# isle — build, test and everything around it. See README.md.
#
#   make            build build/isle/core.so (installs missing Debian packages first)
#   make deps       apt-get install whatever of DEB_PKGS is missing (apt-get update only then)
#   make test       the busted specs; the last line is "N passed, N failed, N skipped"
#   make check      the specs again against an AddressSanitizer build (build-asan/)
#   make lint       luacheck, clang-format --dry-run, the CLOEXEC grep gate, rockspec sanity
#   make doc        LDoc reference in doc/
#   make install    luarocks --lua-version=5.4 make (module, Lua files, the isle command)
#   make demo       examples/demo.lua from the checkout
#   make vmtest     the specs on one of Debian's kernels in qemu (KERNEL=5.10, 6.1, 6.12; vm/)
#   make test-kernels  the specs on each of them, then one line per kernel and the total
#   make bench      every executable bench/* script (never run by the tests)
#   make clean
#
# Always lua5.4: installing luarocks may point /usr/bin/lua at Lua 5.1.
LUA      ?= lua5.4
CC       ?= gcc
CFLAGS   ?= -O2 -g
PKGS     := lua5.4 libnl-3.0 libnl-route-3.0 libnftables
WARN     := -std=gnu11 -Wall -Wextra -Werror -Wshadow -Wmissing-prototypes \
            -Wstrict-prototypes -Wcast-qual -Wwrite-strings -Wundef \
            -Wpointer-arith -Wformat=2
# Recursive (=) on purpose: pkg-config runs when a recipe needs it, after deps.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
ALL_CFLAGS = $(CFLAGS) $(WARN) -fPIC -fvisibility=hidden -Ibuild $(PKG_CFLAGS)
LIBS       = -ldl -pthread
NL_LIBS    = $(shell pkg-config --libs libnl-3.0 libnl-route-3.0) -ldl
SRCS     := $(wildcard src/*.c)
HDRS     := $(wildcard src/*.h)
OBJS     := $(patsubst src/%.c,build/obj/%.o,$(SRCS))
ASAN_OBJS := $(patsubst src/%.c,build-asan/obj/%.o,$(SRCS))
# isle.core_nl (src/core_nl.c): the files of netlink, nftables and ICMP (those
# that include nl.h, but netns.c), linked with libnl, loaded by isle.core on
# first use; with the two files whose helpers they use.
NL_NAMES  := core_nl $(filter-out netns,$(patsubst src/%.c,%,$(shell grep -l '"nl.h"' src/*.c)))
CORE_OBJS := $(filter-out $(patsubst %,build/obj/%.o,$(NL_NAMES)),$(OBJS))
NL_OBJS   := $(patsubst %,build/obj/%.o,$(NL_NAMES) aux netns)
CORE_ASAN_OBJS := $(filter-out $(patsubst %,build-asan/obj/%.o,$(NL_NAMES)),$(ASAN_OBJS))
NL_ASAN_OBJS   := $(patsubst %,build-asan/obj/%.o,$(NL_NAMES) aux netns)

# Debian packages: build, specs, lint, doc, install; frr and dnsmasq-base
# (the program only, no service) for the daemon examples. DEB_EXTRA adds more
# (e.g. `make deps DEB_EXTRA=graphviz` for `isle graph --svg`).
DEB_PKGS := lua5.4 liblua5.4-dev libnl-3-dev libnl-route-3-dev libnftables-dev pkg-config \
            lua-busted lua-cjson lua-check lua-ldoc lua-discount luarocks clang-format \
            iproute2 iputils-ping util-linux procps uidmap nftables busybox-static \
            netcat-openbsd lua-socket lua-system bc time frr dnsmasq-base libseccomp-dev
# For make bench: the runtimes bench/container compares isle with.
DEB_BENCH := bubblewrap crun
DEB_EXTRA ?=
# For make vmtest (vm/): qemu, kmod (depmod and modprobe, for the unpacked
# kernels and inside the VM, which runs on this machine's own /), cpio and
# the decompressors of the initramfs. `make deps DEB_VM=` leaves them out.
DEB_VM   ?= qemu-system-x86 kmod cpio xz-utils zstd
SUDO     := $(if $(filter 0,$(shell id -u)),,sudo)
DEPS_STAMP := build/.deps-ok

BUSTED   := busted --lua=$(LUA)
BUSTED_ARGS ?=
SPECS    ?= spec
SUMMARY  := -o spec/summary_handler.lua
CHECKOUT_ENV := LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/?.so;;'

.PHONY: all deps test check lint doc install uninstall demo bench clean rock-install \
        vmtest test-kernels prune-bytecode

# The Lua modules precompiled (luac, with debug info): loading bytecode
# instead of parsing saves each `isle` command ~3 ms. bin/isle uses them
# only while they are newer than their source; `make install` installs them.
LUAC     ?= luac5.4
LUA_SRCS := $(shell find lua/isle -name '*.lua')
LUA_BC   := $(patsubst lua/%,build/lua/%,$(LUA_SRCS))

all: build/isle/core.so build/isle/core_nl.so $(LUA_BC) prune-bytecode

build/lua/isle/%.lua: lua/isle/%.lua
	@mkdir -p $(dir $@)
	$(LUAC) -o $@ $<

# Bytecode whose source is gone (e.g. isle/container.lua, now the folder
# isle/container/) would be installed and found before the folder's init.lua.
prune-bytecode:
	@find build/lua -name '*.lua' 2>/dev/null | while read -r f; do \
	  [ -f "lua/$${f#build/lua/}" ] || rm -f "$$f"; done

# --- dependencies ---------------------------------------------------------
# Installing frr starts frr.service (zebra and staticd in the machine's own
# network namespace) on a systemd machine: the unit is masked first, when
# this installs frr (lab routers run FRR's daemons as lab services).
deps:
	@missing=$$(for p in $(DEB_PKGS) $(DEB_VM) $(DEB_EXTRA); do \
	    dpkg-query -W -f='$${db:Status-Abbrev}' $$p 2>/dev/null | grep -q '^ii' || echo $$p; \
	  done | tr '\n' ' '); \
	if [ -z "$$missing" ]; then \
	  echo "deps: all $(words $(DEB_PKGS) $(DEB_VM) $(DEB_EXTRA)) packages present"; \
	else \
	  echo "deps: installing $$missing"; \
	  case " $$missing " in *" frr "*) \
	    [ -d /run/systemd/system ] && $(SUDO) systemctl mask frr.service; esac; \
	  $(SUDO) apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -q --no-install-recommends $$missing; \
	fi

# Checked once per Makefile change; `make deps` always checks.
$(DEPS_STAMP): Makefile
	@$(MAKE) --no-print-directory deps
	@mkdir -p build && touch $@

# --- build ----------------------------------------------------------------
# The default seccomp program, generated with libseccomp at build time (a C
# array in isle.core: a default container needs neither libseccomp nor the
# time to build it; other capability sets build theirs at run time).
SECCOMP_HDR := build/seccomp_default.h

build/gen/seccomp_gen: src/gen/seccomp_gen.c src/seccomp_policy.c src/seccomp_policy.h | $(DEPS_STAMP)
	@mkdir -p build/gen
	$(CC) $(CFLAGS) $(WARN) -o $@ src/gen/seccomp_gen.c src/seccomp_policy.c -lseccomp

$(SECCOMP_HDR): build/gen/seccomp_gen
	build/gen/seccomp_gen > $@.tmp && mv $@.tmp $@

build/obj/%.o: src/%.c $(HDRS) $(SECCOMP_HDR) | $(DEPS_STAMP)
	@mkdir -p build/obj
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

build/isle/core.so: $(CORE_OBJS)
	@mkdir -p build/isle
	$(CC) -shared -o $@ $(CORE_OBJS) $(LIBS)

build/isle/core_nl.so: $(NL_OBJS)
	@mkdir -p build/isle
	$(CC) -shared -o $@ $(NL_OBJS) $(NL_LIBS)

# --- tests ----------------------------------------------------------------
# spec/summary_handler.lua lists every test, then the failures in full, and
# ends with the line "N passed, N failed, N skipped" (.ci/run relies on it).
# busted exits non-zero when anything failed or errored.
test: all
	$(BUSTED) $(SUMMARY) $(BUSTED_ARGS) $(SPECS)

# The specs on Debian's own kernels, booted in qemu (TCG) with this
# machine's / read-only under a tmpfs overlay, from this checkout (built
# here first). vm/fetch downloads each kernel package once into
# build/vm/KERNEL. The last line is the summary, then the kernel. See
# README.md, "Kernels".
KERNEL   ?= 6.1
KERNELS  ?= 5.10 6.1 6.12

vmtest: all
	@vm/vmtest $(KERNEL) $(BUSTED) $(SUMMARY) $(BUSTED_ARGS) $(SPECS)

test-kernels: all
	@KERNELS="$(KERNELS)" vm/test-kernels $(BUSTED) $(SUMMARY) $(BUSTED_ARGS) $(SPECS)

# The specs against an ASan build of isle.core. Debian's lua5.4 is not
# instrumented, so libasan is preloaded; spec/asan/scrub_env.c (preloaded
# after it) drops LD_PRELOAD from the environment at startup so that the
# programs the specs run (ip, sh, true, ...) do not get the sanitizer and its
# leak report. Leaks are checked in the Lua process at exit, when lua_close
# has freed every Lua object; known leaks of system libraries are listed in
# spec/asan/lsan.supp. busted runs straight under lua5.4 (--ignore-lua) so
# that no other interpreter starts with the runtime preloaded.
ASAN_FLAGS := -fsanitize=address -fno-omit-frame-pointer -O1 -g
LIBASAN     = $(shell $(CC) -print-file-name=libasan.so)

build-asan/obj/%.o: src/%.c $(HDRS) $(SECCOMP_HDR) | $(DEPS_STAMP)
	@mkdir -p build-asan/obj
	$(CC) $(filter-out -O2,$(ALL_CFLAGS)) $(ASAN_FLAGS) -c -o $@ $<

build-asan/isle/core.so: $(CORE_ASAN_OBJS)
	@mkdir -p build-asan/isle
	$(CC) -shared -fsanitize=address -o $@ $(CORE_ASAN_OBJS) $(LIBS)

build-asan/isle/core_nl.so: $(NL_ASAN_OBJS)
	@mkdir -p build-asan/isle
	$(CC) -shared -fsanitize=address -o $@ $(NL_ASAN_OBJS) $(NL_LIBS)

build-asan/scrub_env.so: spec/asan/scrub_env.c
	@mkdir -p build-asan
	$(CC) -O2 -Wall -Wextra -Werror -fPIC -shared -o $@ $< -ldl

check: all build-asan/isle/core.so build-asan/isle/core_nl.so build-asan/scrub_env.so
	LD_PRELOAD="$(LIBASAN) $(CURDIR)/build-asan/scrub_env.so" \
	ISLE_ASAN_PIN=$(CURDIR)/build-asan/isle/core.so \
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=86:strict_string_checks=1:detect_stack_use_after_return=0 \
	LSAN_OPTIONS=suppressions=$(CURDIR)/spec/asan/lsan.supp:print_suppressions=0 \
	  $(LUA) $$(command -v busted) --ignore-lua --cpath='build-asan/?.so' \
	    $(SUMMARY) $(BUSTED_ARGS) $(SPECS)

# --- lint -----------------------------------------------------------------
# The CLOEXEC gate: a call that creates a descriptor must say CLOEXEC on the
# same line (O_CLOEXEC, SOCK_CLOEXEC, EFD_CLOEXEC, ...). Comment lines are
# skipped; write the flag (or a comment naming it) where a call is exempt.
FD_CALLS := open openat openat2 socket socketpair pipe pipe2 eventfd accept accept4 \
            memfd_create epoll_create epoll_create1 signalfd timerfd_create inotify_init \
            inotify_init1 open_tree fsopen fsmount fopen dup
empty :=
space := $(empty) $(empty)
FD_RE := $(subst $(space),|,$(strip $(FD_CALLS)))
LUA_FILES = lua spec bin/isle examples $(shell grep -l '^.!.*lua' bench/* 2>/dev/null)

lint: $(DEPS_STAMP)
	@fail=0; \
	echo "lint: luacheck"; \
	luacheck -q --no-color $(LUA_FILES) || fail=1; \
	echo "lint: clang-format"; \
	clang-format --dry-run --Werror $(SRCS) $(HDRS) src/gen/*.c || fail=1; \
	echo "lint: CLOEXEC gate"; \
	hits=$$(grep -HnE '(^|[^A-Za-z0-9_>.])($(FD_RE))[[:space:]]*\(' $(SRCS) $(HDRS) \
	  | grep -v CLOEXEC | grep -vE '^[^:]+:[0-9]+:[[:space:]]*(\*|/\*|//)' \
	  | grep -vE 'fopen\([^;]*"[a-z+]*e[a-z+]*"'); \
	if [ -n "$$hits" ]; then \
	  echo "descriptors opened without CLOEXEC on the same line:"; echo "$$hits"; fail=1; \
	fi; \
	echo "lint: one finally a test (busted keeps the last one only)"; \
	hits=$$(for f in spec/*.lua spec/unit/*.lua; do awk -v F=$$f '/^ *(it|pending)\(/{ if (n > 1) print F ":" s; n = 0; s = NR } \
	  /finally\(/{ n++ } END { if (n > 1) print F ":" s }' $$f; done); \
	if [ -n "$$hits" ]; then echo "tests with more than one finally:"; echo "$$hits"; fail=1; fi; \
	echo "lint: rockspec"; \
	$(LUA) -e 'assert(loadfile("isle-scm-1.rockspec", "t", {}))()' || fail=1; \
	if [ $$fail = 0 ]; then echo "lint: clean"; else echo "lint: FAILED"; fi; \
	exit $$fail

# --- doc, install, demo, bench --------------------------------------------
# LDoc makes a module of each C file that lacks @module: join src/*.c under
# one "@module isle.core" header (config.ld reads build/ldoc/isle_core.c).
doc: $(DEPS_STAMP)
	@mkdir -p build/ldoc
	@{ printf '/***\n * The C layer under the isle modules: one operation per function, no\n'; \
	   printf ' * policy (see README.md). Most users want the `isle` module instead.\n'; \
	   printf ' * @module isle.core\n */\n'; \
	   for f in $(SRCS); do printf '\n/* ---- %s */\n' $$f; \
	     grep -v -e '@module' -e '@submodule' $$f; done; } > build/ldoc/isle_core.c
	ldoc .

install: $(DEPS_STAMP)
	luarocks --lua-version=$(patsubst lua%,%,$(LUA)) make isle-scm-1.rockspec

uninstall:
	luarocks --lua-version=$(patsubst lua%,%,$(LUA)) remove isle

# Called by luarocks (isle-scm-1.rockspec, build type "make") with the rock's
# own directories; everything under lua/isle/ (folders too) goes in, so new modules need no
# rockspec change. They go in as bytecode (see LUA_BC).
rock-install:
	mkdir -p '$(INST_LUADIR)/isle' '$(INST_LIBDIR)/isle'
	cp -R build/lua/isle/. '$(INST_LUADIR)/isle/'
	cp build/isle/core.so '$(INST_LIBDIR)/isle/core.so'
	cp build/isle/core_nl.so '$(INST_LIBDIR)/isle/core_nl.so'

demo: all
	$(CHECKOUT_ENV) $(LUA) examples/demo.lua
	bin/isle up examples/bridge.lua && { bin/isle exec bridge h1 -- ping -c2 h2 && bin/isle exec bridge h1 -- ping -c2 upstream; s=$$?; bin/isle down bridge; exit $$s; }

bench: all
	@$(MAKE) --no-print-directory deps DEB_EXTRA="$(DEB_BENCH) $(DEB_EXTRA)"
	@status=0; ran=0; for b in bench/spawn bench/netlink bench/lab bench/exec bench/container; do \
	  if [ -f $$b ] && [ -x $$b ]; then echo "== $$b"; ran=1; ./$$b || status=1; fi; \
	done; [ $$ran = 1 ] || echo "bench: no benchmark scripts"; exit $$status

clean:
	rm -rf build build-asan doc
