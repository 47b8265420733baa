# guild — top-level entry points. `make run` and `make test` each work on a
# fresh Debian machine: they install what is missing first.

BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
JOBS       ?= $(shell nproc)
DATA       ?= $(CURDIR)/data
SOURCES     = $(shell git ls-files '*.c' '*.h' 2>/dev/null || find common domain eventstore bus projections gateway cmd tests bench -name '*.[ch]')

.PHONY: all deps build run test asan fuzz-build fuzz-check fuzz bench bench-peers format format-check lint clean

all: build

deps:
	@bash scripts/deps.sh

$(BUILD)/Makefile: CMakeLists.txt
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGUILD_DEV=ON

build: deps $(BUILD)/Makefile
	cmake --build $(BUILD) -j $(JOBS)

run: build
	$(BUILD)/guild up --data $(DATA)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DGUILD_DEV=ON -DGUILD_SANITIZE=ON
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j $(JOBS)

# libFuzzer targets (fuzz/) with ASan and UBSan, built with clang.
fuzz-build:
	@bash scripts/deps.sh fuzz
	CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGUILD_DEV=ON -DGUILD_FUZZ=ON
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzzers

# Every input kept in fuzz/corpus, once (a regression check; CI runs it).
fuzz-check: fuzz-build
	bash scripts/fuzz.sh $(FUZZ_BUILD) check

# Fuzzing proper: FUZZ_SECONDS per target (default 60).
fuzz: fuzz-build
	bash scripts/fuzz.sh $(FUZZ_BUILD) run $(FUZZ_SECONDS)

# The store beside a bare LMDB loop; then a 1M-event history: verify and
# export rates, rebuild rate and query latency (the lag phase needs more
# of the machine: `build/guild bench project` runs it).
bench: build
	$(BUILD)/guild bench store
	$(BUILD)/guild bench project --no-lag

# guild beside PostgreSQL, NATS JetStream and a bare NATS echo on one workload (bench/peers/):
# installs the peers' packages if missing, builds, runs. ARGS='--quick' for a smoke run.
bench-peers: build
	@bash bench/peers/deps.sh
	$(MAKE) -C bench/peers run BUILD=$(abspath $(BUILD)) ARGS='$(ARGS)'

format:
	clang-format -i $(SOURCES)

format-check:
	clang-format --dry-run --Werror $(SOURCES)

lint: build
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
		--std=c11 --inline-suppr -I . common eventstore bus domain projections cmd bench fuzz

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
