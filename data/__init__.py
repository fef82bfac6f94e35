"""Small committed course data (manifests, class lists), installed as `course_lib._data`."""
