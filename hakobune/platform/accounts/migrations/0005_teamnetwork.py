import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0004_team_created_by"),
    ]

    operations = [
        migrations.CreateModel(
            name="TeamNetwork",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("subnet", models.CharField(max_length=18, unique=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "team",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE, related_name="network", to="accounts.team"
                    ),
                ),
            ],
            options={"ordering": ["subnet"]},
        ),
    ]
