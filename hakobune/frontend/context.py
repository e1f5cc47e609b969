from django.conf import settings


def platform(request):
    return {"BASE_DOMAIN": settings.BASE_DOMAIN, "ROUTER_HTTPS": settings.ROUTER_HTTPS}
