import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def creators_from_first_owners(apps, schema_editor):
    """Teams made before this was recorded count for their first owner."""
    Team = apps.get_model("accounts", "Team")
    Membership = apps.get_model("accounts", "Membership")
    for team in Team.objects.filter(created_by__isnull=True):
        first = Membership.objects.filter(team=team, role="owner").order_by("created_at", "id").first()
        if first is not None:
            Team.objects.filter(id=team.id).update(created_by_id=first.user_id)


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0003_apitoken_revoked_reason"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="team",
            name="created_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="created_teams",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.RunPython(creators_from_first_owners, migrations.RunPython.noop),
    ]
