@echo off
rem `inv` for Windows (Command Prompt or PowerShell): bin\inv up, bin\inv status, bin\inv check ...
rem Makes .venv on first use; bin\bootstrap.py installs labvm and the SDKs hosts.yml's profiles need, once.
setlocal
set "root=%~dp0.."
set "python=%root%\.venv\Scripts\python.exe"
if not exist "%python%" (
    py -3 -m venv "%root%\.venv" 2>nul || python -m venv "%root%\.venv" || (echo bin\inv: labvm needs Python 3.10+ ^(python.org or the Microsoft Store^) 1>&2 & exit /b 1)
)
"%python%" -c "import sys; sys.exit(sys.version_info < (3, 10))" || (echo bin\inv: labvm needs Python 3.10+ 1>&2 & exit /b 1)
"%python%" "%root%\bin\bootstrap.py" || exit /b 1
"%python%" -m labvm %*
