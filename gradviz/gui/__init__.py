"""The desktop app: a main window of views over a Recording, and a worker that trains into it."""
