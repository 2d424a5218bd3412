# llmgw — one plain Makefile. Variants by flag: make SANITIZE=address,undefined
# Targets: all run test unit e2e bench fuzz install clean

CC      ?= cc
PKGS    := libevent libevent_pthreads libcurl jansson yajl libcrypto sqlite3 yaml-0.1 libpq libseccomp
PREFIX  ?= /usr/local

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN    := -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wstrict-prototypes -Wmissing-prototypes \
           -Wno-unused-parameter
BASE_CFLAGS := -std=c17 -D_GNU_SOURCE -fPIC -fvisibility=hidden -Isrc -Iinclude $(WARN) $(PKG_CFLAGS) -MMD -MP
CFLAGS  ?= -O2 -g
LDLIBS  := $(PKG_LIBS) -lpthread -lm

LIB_SRC := $(sort $(wildcard src/util/*.c src/store/*.c src/providers/*.c src/http/*.c \
             src/policy/*.c src/route/*.c src/session/*.c src/conv/*.c src/core/*.c src/admin/*.c))
# The browser files, embedded into the library (core/web): web/ → build/gen/web_assets.c
WEB_ASSETS := web/sdk/llmgw.js web/example/index.html web/example/app.js \
              web/dashboard/index.html web/dashboard/app.js web/dashboard/style.css
LIB_SRC += build/gen/web_assets.c
CLI_SRC := $(sort $(wildcard src/cli/*.c))
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))

OBJ      := $(LIB_SRC:%.c=build/obj/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=build/obj/%.o)
SAN_OBJ  := $(LIB_SRC:%.c=build/san/obj/%.o)
# Test builds (sanitized) also get the test hooks: a clock tests can move (GW_TEST_HOOKS).
SAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all \
             -DGW_TEST_HOOKS
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=build/san/%)

.PHONY: all run test unit unit-build check-clang e2e bench fuzz install clean deps
all: build/llmgw build/libllmgw.a build/libllmgw.so

# The shared library's version and soname (bump SOMAJOR on an ABI break).
VERSION := $(shell sed -n 's/^#define LLMGW_VERSION "\(.*\)"/\1/p' include/llmgw.h)
SOMAJOR := 0
SONAME  := libllmgw.so.$(SOMAJOR)

# V=1 shows the full commands.
Q := $(if $(V),,@)

build/gen/web_assets.c: $(WEB_ASSETS) scripts/embed.sh
	@mkdir -p $(dir $@)
	$(Q)scripts/embed.sh $(WEB_ASSETS) >$@.tmp && mv $@.tmp $@

build/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC      $<")
	$(Q)$(CC) $(BASE_CFLAGS) $(CFLAGS) -c $< -o $@

build/san/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC san  $<")
	$(Q)$(CC) $(BASE_CFLAGS) $(SAN_FLAGS) -c $< -o $@

build/libllmgw.a: $(OBJ)
	@rm -f $@
	ar rcs $@ $^

build/libllmgw.so.$(VERSION): $(OBJ)
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--no-undefined -o $@ $^ $(LDLIBS)

build/$(SONAME): build/libllmgw.so.$(VERSION)
	ln -sf libllmgw.so.$(VERSION) $@

build/libllmgw.so: build/$(SONAME)
	ln -sf $(SONAME) $@

# The server takes mimalloc for malloc (its whole process: the library's link line names it
# first, and --no-as-needed keeps it though nothing calls it by name); the library itself
# leaves the allocator to whoever embeds it, and the sanitized builds keep the sanitizers' own.
SERVER_LIBS := -Wl,--push-state,--no-as-needed -lmimalloc -Wl,--pop-state

build/llmgw: $(CLI_OBJ) build/libllmgw.a
	$(CC) $(CFLAGS) -o $@ $(CLI_OBJ) build/libllmgw.a $(SERVER_LIBS) $(LDLIBS)

build/san/libllmgw.a: $(SAN_OBJ)
	@rm -f $@
	ar rcs $@ $^

# The server under ThreadSanitizer, for the threaded end-to-end runs.
TSAN_OBJ := $(LIB_SRC:%.c=build/tsan/obj/%.o) $(CLI_SRC:%.c=build/tsan/obj/%.o)
build/tsan/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC tsan $<")
	$(Q)$(CC) $(BASE_CFLAGS) -O1 -g -fsanitize=thread -DGW_TEST_HOOKS -c $< -o $@

build/tsan/llmgw: $(TSAN_OBJ)
	@$(if $(V),,echo "  LD tsan $@")
	$(Q)$(CC) -fsanitize=thread -o $@ $^ $(LDLIBS)

# The server itself under ASan+UBSan, for the end-to-end suite.
build/san/llmgw: $(CLI_SRC:%.c=build/san/obj/%.o) build/san/libllmgw.a
	@$(if $(V),,echo "  LD san  $@")
	$(Q)$(CC) $(SAN_FLAGS) -o $@ $^ $(LDLIBS)

build/san/test_%: tests/unit/test_%.c build/san/libllmgw.a
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  TEST    $@")
	$(Q)$(CC) $(BASE_CFLAGS) $(SAN_FLAGS) -Itests/unit -o $@ $< build/san/libllmgw.a \
	    $(LDLIBS) -lcmocka

unit-build: $(UNIT_BIN)

unit: $(UNIT_BIN)
	@scripts/run-unit.sh $(UNIT_BIN)

# Every source through clang's warnings too (the build itself uses $(CC)).
check-clang: build/gen/web_assets.c
	@for f in $(LIB_SRC) $(CLI_SRC) $(UNIT_SRC); do \
	    clang $(filter-out -MMD -MP,$(BASE_CFLAGS)) -Itests/unit -fsyntax-only $$f || exit 1; \
	done; echo "clang: no warnings"

deps:
	@scripts/deps.sh build

run: deps
	@$(MAKE) --no-print-directory all
	@mkdir -p data
	./build/llmgw serve

test:
	@scripts/test.sh

e2e: all build/san/llmgw
	@scripts/run-e2e.sh

build/bench_route: bench/route.c build/libllmgw.a
	$(Q)$(CC) $(BASE_CFLAGS) $(CFLAGS) -o $@ $< build/libllmgw.a $(LDLIBS)

build/bench_reserve: bench/reserve.c build/libllmgw.a
	$(Q)$(CC) $(BASE_CFLAGS) $(CFLAGS) -o $@ $< build/libllmgw.a $(LDLIBS)

bench: deps
	@$(MAKE) --no-print-directory all build/bench_route build/bench_reserve
	@build/bench_route
	@bench/reserve.sh
	@bench/run.sh
	@bench/compare.sh
	@bench/streams.sh
	@bench/admin_load.sh

# ---- fuzz: libFuzzer harnesses, one per parser of outside input (tests/fuzz, docs/fuzzing.md) ----
# make fuzz [FUZZ_SECONDS=N]: build them (clang), replay each corpus and its regressions, then
# fuzz each harness for N seconds (scripts/fuzz.sh). The library is rebuilt for them in its own
# object tree, instrumented for coverage and under ASan+UBSan, with the test hooks.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 300
FUZZ_FLAGS   := -O1 -g -fno-omit-frame-pointer -fno-sanitize-recover=all -DGW_TEST_HOOKS
FUZZ_SRC     := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_COMMON  := $(sort $(wildcard tests/fuzz/common/*.c))
FUZZ_BIN     := $(FUZZ_SRC:tests/fuzz/%.c=build/fuzz/%)
FUZZ_OBJ     := $(LIB_SRC:%.c=build/fuzz/obj/%.o)
FUZZ_COMMON_OBJ := $(FUZZ_COMMON:%.c=build/fuzz/obj/%.o)

build/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC fuzz $<")
	$(Q)$(FUZZ_CC) $(BASE_CFLAGS) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link,address,undefined -c $< -o $@

build/fuzz/libllmgw.a: $(FUZZ_OBJ)
	@rm -f $@
	$(Q)ar rcs $@ $^

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_COMMON_OBJ) build/fuzz/libllmgw.a
	@$(if $(V),,echo "  LD fuzz $@")
	$(Q)$(FUZZ_CC) $(BASE_CFLAGS) $(FUZZ_FLAGS) -fsanitize=fuzzer,address,undefined -o $@ $< \
	    $(FUZZ_COMMON_OBJ) build/fuzz/libllmgw.a $(LDLIBS)

.PHONY: fuzz-build
fuzz-build: $(FUZZ_BIN)

fuzz:
	@scripts/fuzz.sh $(FUZZ_SECONDS)

-include $(FUZZ_OBJ:.o=.d) $(FUZZ_COMMON_OBJ:.o=.d) $(FUZZ_BIN:=.d)

# make install [PREFIX=/usr/local] [DESTDIR=...]: the binary and its man page, the header, the
# static and shared libraries (soname libllmgw.so.$(SOMAJOR)), llmgw.pc and the model catalog.
# It builds what `all` builds, with the same flags; PREFIX only goes into llmgw.pc.
BINDIR  ?= $(PREFIX)/bin
LIBDIR  ?= $(PREFIX)/lib
INCDIR  ?= $(PREFIX)/include
MANDIR  ?= $(PREFIX)/share/man
DATADIR ?= $(PREFIX)/share/llmgw
# llmgw.pc: Requires.private names the pkg-config modules of PKGS but libpq, which is -lpq in
# Libs.private: Debian's libpq.pc asks `--static` links for -lpgcommon -lpgport, which no -dev
# package puts on the linker's path, so `pkg-config --static --libs llmgw` would not link.
PC_REQUIRES := $(filter-out libpq,$(PKGS))
install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCDIR) \
	    $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(DATADIR)
	install -m 755 build/llmgw $(DESTDIR)$(BINDIR)/
	install -m 644 docs/llmgw.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 644 include/llmgw.h $(DESTDIR)$(INCDIR)/
	install -m 644 build/libllmgw.a $(DESTDIR)$(LIBDIR)/
	install -m 755 build/libllmgw.so.$(VERSION) $(DESTDIR)$(LIBDIR)/
	ln -sf libllmgw.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libllmgw.so
	install -m 644 catalog/models.yaml catalog/routing.yaml $(DESTDIR)$(DATADIR)/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCDIR@|$(INCDIR)|' \
	    -e 's|@DATADIR@|$(DATADIR)|' -e 's|@VERSION@|$(VERSION)|' -e 's|@PC_REQUIRES@|$(PC_REQUIRES)|' \
	    llmgw.pc.in >$(DESTDIR)$(LIBDIR)/pkgconfig/llmgw.pc

clean:
	rm -rf build

SAN_CLI_OBJ := $(CLI_SRC:%.c=build/san/obj/%.o)
-include $(OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(SAN_OBJ:.o=.d) $(SAN_CLI_OBJ:.o=.d) \
    $(UNIT_BIN:=.d) $(TSAN_OBJ:.o=.d) build/san/embed_prog.d

# The in-process API's driver for tests/e2e/embed.test.js (two gateways in one process).
build/san/embed_prog: tests/embed/prog.c build/san/libllmgw.a
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(BASE_CFLAGS) $(SAN_FLAGS) -o $@ $< build/san/libllmgw.a $(LDLIBS)
