from django.core.management.base import BaseCommand, CommandError

from hakobune.platform.accounts import networks
from hakobune.platform.accounts.models import Team
from hakobune.platform.services.team_networks import GrowRefused, grow
from hakobune.runtime.base import RuntimeBackendError


class Command(BaseCommand):
    help = ("A team's network block. `show TEAM`: its block and what it holds; `grow TEAM`: moves the team to a "
            "block of its quota's size (its services and add-ons stop for a few seconds; data stays).")

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["show", "grow"])
        parser.add_argument("team")

    def handle(self, *args, action, team, **options):
        found = Team.objects.filter(name=team).first()
        if found is None:
            raise CommandError(f"There is no team {team}.")
        if action == "show":
            block = found.network
            short = networks.too_small(found)
            self.stdout.write(f"  block: {block.subnet if block else '(none yet)'}")
            if short:
                self.stdout.write(f"  holds {short['holds']} instances; its quota allows {short['allows']}"
                                  + (f": `grow` moves it to a /{short['prefix']}" if short["larger"] else ""))
            return
        try:
            done = grow(found)
        except GrowRefused as exc:
            raise CommandError(str(exc))
        except networks.NoRoomForTeamNetwork as exc:
            raise CommandError(exc.in_words())
        except RuntimeBackendError as exc:
            raise CommandError(exc.message)
        for line in done:
            self.stdout.write(f"  ✓ {line}")
