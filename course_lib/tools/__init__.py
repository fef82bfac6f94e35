"""course_lib.tools: the course machinery, for instructors and maintainers; no notebook calls it.

The `course` command (`cli`) and what it runs: executing the notebooks (`runner`), building the
student notebooks (`release`), a class's autograder and grading (`classroom`, `grading`, `submission`),
the website (`website`). These modules import the learners' library (`course_lib`), never the reverse.
"""
