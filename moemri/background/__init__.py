"""A method run in a background process, so a front end stays responsive and Cancel can stop it.

- run: `BackgroundRun` (start, poll or pump, cancel, wait) and `BackgroundProcessRunner`;
- worker: the child process (`python -m moemri.background.worker REQUEST.json`);
- protocol: the JSON lines between them, decoded once into `RunEvent`s for a `RunCallbacks`,
  and the result files read back into a MethodResult.
Imports only the standard library and the core; the Slicer modules and the web demo use it.
"""
