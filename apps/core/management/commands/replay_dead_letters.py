"""manage.py replay_dead_letters [--task NAME] [--all]: send failed jobs again."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.core.jobs import dead_letters_replay, registered_tasks
from apps.core.models import DeadLetter


class Command(BaseCommand):
    help = "Send dead-lettered jobs again (those not replayed yet, unless --all)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--task", help="only this task name, e.g. portfolio.generate_invoice")
        parser.add_argument("--all", action="store_true", help="include letters already replayed")

    def handle(self, *args: Any, **options: Any) -> None:
        letters = DeadLetter.objects.order_by("failed_at")
        task = options["task"]
        if task is not None:
            task = task.strip()
            if not task or task not in registered_tasks():
                raise CommandError(f"--task: unknown task {task!r}")
            letters = letters.filter(task_name=task)
        if not options["all"]:
            letters = letters.filter(replayed_at__isnull=True)
        pending = list(letters)
        self.stdout.write(f"{len(pending)} dead letter(s) to replay")
        sent = 0
        for position, letter in enumerate(pending, start=1):
            sent += dead_letters_replay([letter])
            self.stdout.write(f"[{position}/{len(pending)}] {letter.task_name} {letter.task_id}")
        self.stdout.write(self.style.SUCCESS(f"Replayed {sent} of {len(pending)}."))
