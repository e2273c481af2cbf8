"""The `flowmonkey` command: parse, call the library, print."""

from __future__ import annotations

import click

from flowmonkey_celery.cli.db import db
from flowmonkey_celery.cli.demo import demo
from flowmonkey_celery.cli.flows import validate
from flowmonkey_celery.cli.handlers import handlers


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="flowmonkey-celery")
def main() -> None:
    """FlowMonkey for Python on Celery: durable, declarative workflows."""


main.add_command(db)
main.add_command(demo)
main.add_command(validate)
main.add_command(handlers)
