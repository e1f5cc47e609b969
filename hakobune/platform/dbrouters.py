"""Which database each model lives in: the runtime logs in "logs"
(settings.DATABASES, docs/architecture.md "Runtime logs"), everything else in
"default"."""

LOG_MODELS = {"logline", "logcursor"}
LOGS = "logs"


def _is_log(model) -> bool:
    return model._meta.app_label == "observability" and model._meta.model_name in LOG_MODELS


class LogsRouter:
    def db_for_read(self, model, **hints):
        return LOGS if _is_log(model) else None

    def db_for_write(self, model, **hints):
        return LOGS if _is_log(model) else None

    def allow_relation(self, obj1, obj2, **hints):
        return None

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        if app_label == "observability" and model_name in LOG_MODELS:
            return db == LOGS
        if db == LOGS:
            # The log database holds the log models only.
            return False
        return None
