# visual_search — see README.md. `make demo` and `make test` are the two entry points; both
# run scripts/setup.sh first, which installs what is missing (pinned versions) and is idempotent.
PG_CONFIG ?= /usr/lib/postgresql/15/bin/pg_config
PGRX_TEST_DIR ?= /tmp/visual_search-pgrx-test

# `web` is the search page (web/), started by `make demo`.
.PHONY: all setup build install web test lint unit-test pgrx-test regress index-test limits-test service-test async-embed-test parity-test parity-pgvector demo stop demo-test bench-connect bench-service bench-ann bench-kernels bench-rabitq bench-embed bench-async-embed bench-quality bench-transfer bench-quantized-25k bench-iterative bench-scale train-fashion clean

all: build

setup:
	bash scripts/setup.sh

build: setup
	cargo build --release
	cargo build --release -p vs_engine -p vs_service

install: setup
	bash scripts/install.sh

# Formatting and clippy over every crate: seconds, so they run first.
lint: setup
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

# The crates' own tests (crates/vector and crates/hnsw without libtorch), then the extension's
# tests that need no server.
unit-test: setup
	/usr/bin/python3 -m unittest discover -s models -p 'test_*.py'
	cargo test -p vs_vector -p vs_hnsw -p vs_rabitq -p vs_pool -p vs_fashion -p vs_engine_api -p vs_embed -p vs_engine -p vs_train
	# The service's tests run the real executable over the real engine library.
	cargo build --release -p vs_engine
	cargo test --release -p vs_service
	cargo test -p visual_search --lib -- --skip pg_tests::
	cargo test --release -p visual_search_web

# #[pg_test]s inside a pgrx-managed PostgreSQL 15 (as root, the server runs as user postgres).
# `cargo pgrx test` installs the main library only: the engine library goes beside it first.
pgrx-test: setup
	PG_CONFIG=$(PG_CONFIG) bash scripts/install.sh engine
	mkdir -p $(PGRX_TEST_DIR)
	if [ "$$(id -u)" = 0 ]; then chown postgres $(PGRX_TEST_DIR); \
	  cargo pgrx test pg15 --runas postgres --pgdata $(PGRX_TEST_DIR)/data; \
	else cargo pgrx test pg15; fi

web: setup
	cargo build --release -p visual_search_web

regress: install
	bash scripts/regress.sh

# The demo end to end on 2,000 products with the shipped model, and its search page in headless Chromium.
demo-test: install web
	bash scripts/demo_test.sh

# vs_hnsw on a real server: recall on Fashion-MNIST, concurrent writers/readers, crash recovery.
index-test: install
	bash scripts/index_test.sh $(CASES)

# image_embed on hostile images: peak memory, no crash, cancels and timeouts that end at once.
limits-test: install
	bash scripts/limits_test.sh

# The embedding service: batching across connections, cancels, a killed service, preloading.
service-test: install
	bash scripts/service_test.sh

# Auto-embedding in the background: the queue, the drainer, crashes mid-drain, concurrent writers.
async-embed-test: install
	bash scripts/async_embed_test.sh

# pgvector 0.8.6's own regression statements, translated, against its recorded answers.
parity-test: install
	bash scripts/parity_test.sh

# Needs pgvector's source (PGVECTOR_SRC): records its answers anew, and moves a table from it.
parity-pgvector: install
	bash scripts/parity_pgvector.sh

test: lint unit-test pgrx-test regress index-test limits-test service-test async-embed-test parity-test demo-test

demo: install web
	bash scripts/demo.sh

stop:
	bash scripts/web.sh stop .demo
	bash scripts/pgcluster.sh stop .demo

# A new connection that parses a literal, its backend's RSS and a parallel scan, beside pgvector
# built from source into the same server (issue #15, point 1; a minute or two).
bench-connect: install
	bash bench/connect.sh

# The embedding service against in-backend embedding: throughput, latency, server memory at 1, 4
# and 16 clients, full-width VGG16 at 224² and fashion-vgg16 at 32² (issue #15, point 6).
bench-service: install
	bash bench/service.sh

# vs_hnsw against pgvector's figures with the team's harness (about 10 minutes).
bench-ann: install
	bash bench/ann.sh all

# vs_hnsw WITH (quantize = on) at 25,088 dimensions: Fashion-MNIST projected, 60,000 rows, 1,000
# queries, against the exact scan and pgvector (issue #18, point 3; 8-16 minutes, 11 GB of disk).
# Filtered queries under off / relaxed_order / strict_order, beside pgvector (a few minutes).
bench-iterative: install
	bash bench/iterative.sh

bench-quantized-25k: install
	bash bench/quantized_25k.sh

# A million products (100k, 300k and 1M rows): build, memory, size, QPS at recall 0.95 / 0.99 with
# 1 and 4 clients, inserts and VACUUM, beside pgvector (issue #19). Hours at 1M; VS_SCALE_SIZES
# chooses the sizes (e.g. 100000,300000).
bench-scale: install
	bash bench/scale.sh

bench-kernels: setup
	cargo bench -p vs_vector --bench kernels

bench-rabitq: setup
	cargo bench -p vs_rabitq --bench estimate

# Retrieval quality of a model through SQL (precision@10 per category on Fashion-MNIST).
MODEL ?= fashion-vgg16
QUERIES ?= 2000
bench-quality: install
	python3 bench/quality.py --model $(MODEL) --queries $(QUERIES)

# Fine-tuning EfficientNet-Lite0 from ImageNet against its features as they are and fashion-vgg16
# (issue #17, point 4): precision@10 through SQL and wall times (about an hour on 2 idle CPU cores).
bench-transfer: install
	/usr/bin/python3 bench/transfer.py

# Re-trains the shipped model (about 10 minutes on 2 CPU cores); see models/fashion-vgg16/README.md.
train-fashion: setup
	cargo run --release -p vs_train --bin train -- --fashion-mnist /usr/share/datasets/fashion-mnist \
	  --name fashion-vgg16 --width 0.25 --batch-norm --size 32 --epochs 15 --seed 1

# COPY with async auto-embedding vs the synchronous trigger vs none, drain rate, lag (issue #16, point 4).
bench-async-embed: install
	bash bench/async_embed.sh

# Needs torch + torchvision for python3 (pip install torch==2.11.0 torchvision==0.26.0, ~3 GB).
bench-embed: install
	python3 bench/embed_bench.py

clean:
	cargo clean
	rm -rf .regress .bench
