"""Packaging hook (the rest is pyproject.toml): the top-level sql/ folder ships inside the
wheel as pipelines/sql/, where pipelines.settings.SQL_DIR finds it in an installed package."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithSql(build_py):
    def run(self):
        super().run()
        if not self.editable_mode:  # an editable install reads sql/ from the checkout
            target = Path(self.build_lib) / "pipelines" / "sql"
            target.mkdir(parents=True, exist_ok=True)
            for path in sorted(Path("sql").glob("*.sql")):
                shutil.copy2(path, target / path.name)


setup(cmdclass={"build_py": BuildPyWithSql})
