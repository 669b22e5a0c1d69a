# Sourced by tools/setup.sh and tools/build_wheels.sh: finds a CPython interpreter by version.
#
# find_python X.Y prints the path of an interpreter of CPython X.Y and returns 0, or returns 1: pythonX.Y on
# PATH if it runs (a pyenv shim for a version pyenv does not select does not), else the newest
# versions/X.Y.*/bin/pythonX.Y under pyenv ($PYENV_ROOT, default ~/.pyenv).

# The CPython versions the Python package is built (tools/build_wheels.sh) and declared (python/pyproject.toml) for.
ESHM_PYTHON_VERSIONS="3.9 3.10 3.11 3.12 3.13"

find_python() {
  local v=$1 candidate
  candidate=$(command -v "python$v" 2>/dev/null) || candidate=""
  if [[ -n "$candidate" ]] && "$candidate" -c 'import sys' >/dev/null 2>&1; then
    echo "$candidate"
    return 0
  fi
  for candidate in $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}/versions/$v".*/bin/"python$v" 2>/dev/null | sort -V -r); do
    if "$candidate" -c 'import sys' >/dev/null 2>&1; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}
