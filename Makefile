# Two entry points for a newcomer: `make run` and `make test`. Everything lives in .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run test screenshots clean

$(BIN)/karta: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $(BIN)/karta

install: $(BIN)/karta

run: install
	@echo "Create a token in another shell:  $(BIN)/karta token create --name me --scope read --scope write --scope admin"
	@echo "then open http://127.0.0.1:8000/ and sign in with the secret it prints (its last line)."
	$(BIN)/karta serve --migrate

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The README's pictures of the pages, taken by the browser tests (needs Chromium; the network picture
# also needs root, snmpd, lldpd and nmap for its lab).
screenshots: install
	KARTA_UPDATE_SCREENSHOTS=1 $(BIN)/python -m pytest -q tests/web -k "browser and sqlite" -p no:cacheprovider
	KARTA_UPDATE_SCREENSHOTS=1 $(BIN)/python -m pytest -q tests/discovery/test_snmp_picture.py -p no:cacheprovider

clean:
	rm -rf $(VENV) var build *.egg-info
