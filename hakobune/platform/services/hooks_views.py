"""What reaches the portal from outside it, with no one logged in: a git host's
push (the webhook), and the requests of a sleeping service (the waker)."""

from django.http import Http404, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from hakobune.runtime.base import RuntimeBackendError

from .models import Service
from .webhooks import receive_push


@csrf_exempt
def wake_service(request, path=""):
    """The router sends the requests of a sleeping service here: start it, then
    answer the request from it."""
    from . import scaling  # it imports the worker's tasks: only when a sleeping service is asked

    service = scaling.service_for_hostname(request.get_host().rsplit(":", 1)[0].lower())
    if service is None or service.live_release is None:
        raise Http404("No service lives at this address.")
    if service.is_stopped:
        return HttpResponse("This service is stopped by its team.\n", status=503, content_type="text/plain")
    try:
        upstreams = scaling.wake(service)
        answer = scaling.forward(request, upstreams[0], path)
    except RuntimeBackendError as exc:
        return HttpResponse(f"The service could not be woken: {exc.message}\n", status=503, content_type="text/plain")
    except Exception as exc:  # the app did not answer the forwarded request
        return HttpResponse(f"The service woke but did not answer: {exc}\n", status=502, content_type="text/plain")
    response = HttpResponse(answer.content, status=answer.status_code)
    for key, value in answer.headers.items():
        if key.lower() not in scaling.HOP_BY_HOP:
            response[key] = value
    return response


@csrf_exempt
@require_POST
def git_webhook(request, webhook_id):
    service = Service.objects.filter(webhook_id=webhook_id).select_related("team").first()
    if service is None:
        raise Http404("No such webhook")
    answer = receive_push(service, request.headers, request.body, request.META.get("REMOTE_ADDR"))
    return JsonResponse({"message": answer.message, "deploy": answer.build_number}, status=answer.status)
