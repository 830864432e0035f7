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

.PHONY: all test bench debug fuzz clean deps
all: $(BIN) tern

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

$(BIN): $(patsubst %.c,$(BUILD)/%.o,$(TOOLSRC)) $(LIB)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(LIB)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

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

# The whole suite: unit tests, then the end-to-end and bad-input scripts (they print N passed, N failed).
test: $(BIN) $(TESTBIN)
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
