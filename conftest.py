"""Test-session defaults: the fast profile, quiet TensorFlow, quiet progress bars."""

import os

os.environ.setdefault("COURSE_PROFILE", "fast")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("COURSE_QUIET", "1")
