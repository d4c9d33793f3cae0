"""Shared test set-up: Qt never needs a screen, and nothing writes into the real user folders."""

import os
import tempfile

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("GRADVIZ_HOME", tempfile.mkdtemp(prefix="gradviz-test-home-"))
