"""What reaches the portal from outside it, with no one logged in: a git host's
push (the webhook), and the requests of a sleeping service (the waker)."""

from asgiref.sync import sync_to_async
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, JsonResponse
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from hakobune.runtime.router import WAKE_HOST_HEADER

from . import scaling, waker
from .models import DesiredState, Service
from .webhooks import receive_push


@csrf_exempt
@xframe_options_exempt
async def wake_service(request, path=""):
    """The router sends the requests of a sleeping service here: start it, then
    answer the request from it. Only the router's requests (with its secret
    header), only for a public service that is asleep; see waker.py."""
    if not waker.came_from_router(request):
        return waker.text_answer(403, "This address is how the router wakes a sleeping service; it answers the router only.")
    # The host the service was asked at, as the router passes it (the request
    # itself comes to the portal's own name: see router.WAKE_HOST_HEADER).
    host = request.headers.get(WAKE_HOST_HEADER) or request.get_host()
    service = await sync_to_async(scaling.service_for_hostname)(host.rsplit(":", 1)[0].lower())
    if service is None or service.live_release_id is None or not service.public:
        return waker.text_answer(404, "No service lives at this address. Check the name in the Hakobune portal.")
    if service.is_stopped:
        return waker.text_answer(503, "This service is stopped by its team.")
    if service.desired_state != DesiredState.SLEEPING:
        # Only a request the router sent just before the route changed.
        return waker.text_answer(503, "This service is awake now: send the request again.", retry_after=1)
    outcome = await waker.wait_until_awake(service.id)
    if outcome is None:
        return waker.text_answer(503, "The service is still starting: try again in a few seconds.", retry_after=5)
    if outcome.not_asleep:
        return waker.text_answer(503, "This service is awake now: send the request again.", retry_after=1)
    if outcome.problem:
        return waker.text_answer(503, f"The service could not be woken: {outcome.problem}", retry_after=10)
    try:
        return await waker.forward(request, outcome.upstreams[0], host)
    except RequestDataTooBig:
        return waker.text_answer(413, "The service is awake now, but this first request's body is too large for the "
                                      "waker to pass on: send it again.", retry_after=1)


@csrf_exempt
@require_POST
def git_webhook(request, webhook_id):
    service = Service.objects.filter(webhook_id=webhook_id).select_related("team").first()
    if service is None:
        raise Http404("No such webhook")
    answer = receive_push(service, request.headers, request.body, request.META.get("REMOTE_ADDR"))
    return JsonResponse({"message": answer.message, "deploy": answer.build_number}, status=answer.status)
