"""The example application's tables: accounts own projects, projects hold tasks, tasks get comments.

Replace this package (and migrations/versions/) with your own; env.py imports `Base.metadata`.
"""

from models.base import Base
from models.tables import Account, Comment, Project, Task, TaskStatus

__all__ = ["Account", "Base", "Comment", "Project", "Task", "TaskStatus"]
