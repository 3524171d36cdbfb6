@echo off
rem `inv` for Windows (Command Prompt or PowerShell): bin\inv up, bin\inv status, bin\inv check ...
rem Makes .venv with labvm on first use, as bin/bootstrap does (delete .venv to reinstall).
setlocal
set "root=%~dp0.."
set "python=%root%\.venv\Scripts\python.exe"
if exist "%root%\.venv\.labvm-installed" goto run
if not exist "%python%" (
    py -3 -m venv "%root%\.venv" 2>nul || python -m venv "%root%\.venv" || (echo bin\inv: labvm needs Python 3.10+ ^(python.org or the Microsoft Store^) 1>&2 & exit /b 1)
)
"%python%" -c "import sys; sys.exit(sys.version_info < (3, 10))" || (echo bin\inv: labvm needs Python 3.10+ 1>&2 & exit /b 1)
echo bin\inv: installing labvm into .venv 1>&2
"%python%" -m pip install -q --disable-pip-version-check -e "%root%[aws,openstack]" || exit /b 1
type nul > "%root%\.venv\.labvm-installed"
:run
"%python%" -m labvm %*
