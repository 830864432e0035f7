# tern build.  make | make test | make bench | make debug | make fuzz | make clean
# Sources are picked up by folder; an ISA-specific kernel file is compiled with only its ISA's flags.
CC      ?= cc
MODE    ?= release
BUILD   := build/$(MODE)
CSTD    := -std=c11 -D_GNU_SOURCE
WARN    := -Wall -Wextra -Wno-unused-parameter
INC     := -Iinclude -Isrc -I$(BUILD)/gen -I/usr/include/stb
ifeq ($(MODE),debug)
  OPT   := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
  OPT   := -O2 -g
endif
CFLAGS  += $(CSTD) $(WARN) $(INC) $(OPT) -pthread
LDLIBS  := -lprotobuf-c -lopenblas -lstb -lm -lpthread
LDFLAGS += $(filter -fsanitize=%,$(OPT))

ISA_avx2       := -mavx2 -mfma
ISA_avx512vnni := -mavx2 -mfma -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx512vnni

PROTO   := /usr/include/onnx/onnx.proto
GEN     := $(BUILD)/gen/onnx.pb-c.c
LIBSRC  := $(sort $(wildcard src/*/*.c src/kernels/*/*.c))
LIBOBJ  := $(patsubst %.c,$(BUILD)/%.o,$(LIBSRC)) $(BUILD)/gen/onnx.pb-c.o
TOOLSRC := $(sort $(wildcard tools/*.c))
TESTSRC := $(sort $(wildcard tests/test_*.c))
TESTBIN := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TESTSRC))
BENCHSRC:= $(sort $(wildcard bench/*.c))
BENCHBIN:= $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCHSRC))
LIB     := $(BUILD)/libtern.a
BIN     := $(BUILD)/tern
# The shared library: its own position-independent objects (the static library and the CLI keep
# the default code), only the TERN_API symbols of include/tern.h exported.
SO      := $(BUILD)/libtern.so
SOVER   := 0
PICOBJ  := $(patsubst %.c,$(BUILD)/pic/%.o,$(LIBSRC)) $(BUILD)/pic/gen/onnx.pb-c.o
PREFIX  ?= /usr/local
VERSION := $(shell sed -n 's/^\#define TERN_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\)/\2/p' include/tern.h | paste -sd.)

.PHONY: all test bench debug fuzz clean deps install
all: $(BIN) tern $(SO)

tern: $(BIN)
	@ln -sf $(BIN) tern

$(GEN): $(PROTO)
	@mkdir -p $(dir $@)
	cp $(PROTO) $(BUILD)/gen/onnx.proto
	cd $(BUILD)/gen && protoc-c --c_out=. onnx.proto

$(BUILD)/gen/onnx.pb-c.o: $(GEN)
	$(CC) $(CSTD) -O2 -g $(filter -fsanitize=%,$(OPT)) -I$(BUILD)/gen -c $< -o $@

$(BUILD)/%.o: %.c $(GEN)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(ISA_$(lastword $(subst _, ,$(basename $(notdir $<))))) -MMD -MP -c $< -o $@

$(LIB): $(LIBOBJ)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/pic/gen/onnx.pb-c.o: $(GEN)
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) -O2 -g -fPIC -fvisibility=hidden $(filter -fsanitize=%,$(OPT)) -I$(BUILD)/gen -c $< -o $@

$(BUILD)/pic/%.o: %.c $(GEN)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fPIC -fvisibility=hidden $(ISA_$(lastword $(subst _, ,$(basename $(notdir $<))))) -MMD -MP -c $< -o $@

$(SO): $(PICOBJ)
	$(CC) $(LDFLAGS) -shared -Wl,-soname,libtern.so.$(SOVER) -Wl,--no-undefined $^ -o $@ $(LDLIBS)
	ln -sf libtern.so $(BUILD)/libtern.so.$(SOVER)

# make install PREFIX=DIR: header, both libraries, pkg-config file (Libs.private: what a static
# link needs; a user of the shared library needs no other headers or -l flags).
install: $(LIB) $(SO)
	install -d $(PREFIX)/include $(PREFIX)/lib/pkgconfig
	install -m 644 include/tern.h $(PREFIX)/include/tern.h
	install -m 644 $(LIB) $(PREFIX)/lib/libtern.a
	install -m 755 $(SO) $(PREFIX)/lib/libtern.so.$(VERSION)
	ln -sf libtern.so.$(VERSION) $(PREFIX)/lib/libtern.so.$(SOVER)
	ln -sf libtern.so.$(SOVER) $(PREFIX)/lib/libtern.so
	printf '%s\n' 'prefix=$(abspath $(PREFIX))' 'libdir=$${prefix}/lib' 'includedir=$${prefix}/include' '' \
	    'Name: tern' 'Description: ternary-weight, 8-bit integer CNN inference on CPUs' 'Version: $(VERSION)' \
	    'Cflags: -I$${includedir}' 'Libs: -L$${libdir} -Wl,-rpath,$${libdir} -ltern' \
	    'Libs.private: $(LDLIBS)' > $(PREFIX)/lib/pkgconfig/tern.pc
	install -d $(PREFIX)/lib/python3/dist-packages/tern
	install -m 644 python/tern/__init__.py $(PREFIX)/lib/python3/dist-packages/tern/__init__.py

$(BIN): $(patsubst %.c,$(BUILD)/%.o,$(TOOLSRC)) $(LIB)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(LIB)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

# The API test is a user of the installed library: tern.h only, linked against libtern.so.
$(BUILD)/tests/test_api.o: tests/test_api.c include/tern.h
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) -Iinclude $(OPT) -c $< -o $@

$(BUILD)/tests/test_api: $(BUILD)/tests/test_api.o $(SO)
	$(CC) $(LDFLAGS) $< -o $@ -L$(BUILD) -Wl,-rpath,$(abspath $(BUILD)) -l:libtern.so -lm

# The VNNI kernel in its exact AVX2 emulation (see conv_avx512vnni.c), linked into a second
# build of the kernel test so that an AVX2-only machine still proves the VNNI code path's logic.
EMUOBJ  := $(BUILD)/emu/conv_avx512vnni.o
TESTBIN += $(BUILD)/tests/test_conv_kernels_vnni_emu
$(EMUOBJ): src/kernels/x86/conv_avx512vnni.c $(GEN)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(ISA_avx2) -DTERN_VNNI_EMULATE -MMD -MP -c $< -o $@
$(BUILD)/tests/test_conv_kernels_vnni_emu: $(BUILD)/tests/test_conv_kernels.o $(EMUOBJ) $(filter-out %/conv_avx512vnni.o,$(LIBOBJ))
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(LIB)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

# A diagnosis tool (tests/zoo_probe.c, docs/RESULTS.md issue 11): built with the suite so that it
# keeps compiling, not run by it (tests/run.sh runs test_* only).
PROBEBIN := $(BUILD)/tests/zoo_probe

# The whole suite: unit tests, then the end-to-end and bad-input scripts (they print N passed, N failed).
test: $(BIN) $(TESTBIN) $(PROBEBIN) $(SO)
	BUILD=$(BUILD) tests/run.sh

bench: $(BIN) $(BENCHBIN)
	BUILD=$(BUILD) bench/run.sh

debug:
	$(MAKE) MODE=debug test

fuzz:
	tests/fuzz.sh

clean:
	rm -rf build tern

-include $(shell find build -name '*.d' 2>/dev/null)
