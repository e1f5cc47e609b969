from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

# A DNS label: service hostnames are "<service>.<team>.<BASE_DOMAIN>".
dns_label_validator = RegexValidator(
    r"^[a-z]([a-z0-9-]*[a-z0-9])?$",
    "Use lowercase letters, digits and hyphens; start with a letter and do not end with a hyphen.",
)


class Team(models.Model):
    name = models.CharField(
        max_length=30,
        unique=True,
        validators=[dns_label_validator],
        help_text="Part of every service's address, so keep it short.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Who created it: a person may create TEAM_CREATE_LIMIT teams.
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="created_teams"
    )
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="teams")
    # Set when an administrator deletes the team: a worker stops and removes
    # its services, then deletes it and reclaims its network
    # (services/housekeeping.py, destroy_team). No service is created meanwhile.
    deleting_since = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]
        verbose_name = _("team")
        verbose_name_plural = _("teams")

    def __str__(self):
        return self.name

    @property
    def network(self):
        """The team's network block (a TeamNetwork; None before it has one),
        not the one it is being moved to."""
        return self.network_blocks.filter(moving=False).first()


class Role(models.TextChoices):
    """A member's role in a team: a viewer reads, a developer also changes the
    team's services, an owner also manages members and deletes."""

    OWNER = "owner", "Owner"
    DEVELOPER = "developer", "Developer"
    VIEWER = "viewer", "Viewer"

    @property
    def rank(self) -> int:
        return (Role.VIEWER, Role.DEVELOPER, Role.OWNER).index(self)

    def at_least(self, need: "Role") -> bool:
        """Whether this role may do what `need` may (viewer < developer < owner)."""
        return self.rank >= Role(need).rank


class Membership(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.DEVELOPER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="one_membership_per_user_and_team")]

    def __str__(self):
        return f"{self.user} in {self.team} ({self.role})"

    def has_role(self, need: Role) -> bool:
        return Role(self.role).at_least(need)

    @property
    def can_deploy(self) -> bool:
        return self.has_role(Role.DEVELOPER)

    @property
    def is_owner(self) -> bool:
        return self.has_role(Role.OWNER)


class Profile(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile")
    # Set for accounts created with a printed one-time password: the first
    # thing such a person does after logging in is choose their own.
    must_change_password = models.BooleanField(default=False)


class ApiToken(models.Model):
    """A bearer token for the API and the CLI. Only its SHA-256 is stored: the
    token itself is shown once, when it is created."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What it is for, like 'laptop' or 'GitHub Actions'.")
    # The start of the token, so a person can tell their tokens apart.
    prefix = models.CharField(max_length=16)
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Why, when it was not its person's choice ("the account's password changed").
    revoked_reason = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.user} {self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        from django.utils import timezone

        return self.revoked_at is None and (self.expires_at is None or self.expires_at > timezone.now())


class TeamNetwork(models.Model):
    """The address block of a team's network on the local runtime, cut from
    TEAM_SUBNET_POOL (accounts/networks.py). One block a team, one team a
    block: the unique constraints are what makes two claims at once safe.
    Deleting the team frees the row; destroy_team removes the network.

    While the team is moved to a larger block (networks.grow), it holds a
    second row, `moving`, claimed as any block is; the move ends by deleting
    the old row and clearing `moving`. A team has at most one of each."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="network_blocks")
    subnet = models.CharField(max_length=18, unique=True)
    moving = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["subnet"]
        constraints = [models.UniqueConstraint(fields=["team", "moving"], name="one_block_and_one_move_a_team")]

    def __str__(self):
        return f"{self.team_id}: {self.subnet}"
