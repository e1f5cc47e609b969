"""WhiteNoise, async as well as sync: under ASGI every middleware of the portal
can run on the event loop, so an async view (the waker) holds no thread while
it waits. A static file is read in a thread and answered whole (they are small:
the portal's stylesheet, htmx, Chart.js)."""

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpResponse
from whitenoise.middleware import WhiteNoiseMiddleware


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    sync_capable = True
    async_capable = True

    def __init__(self, get_response=None, *args, **kwargs):
        super().__init__(get_response, *args, **kwargs)
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        return super().__call__(request)

    async def __acall__(self, request):
        if self.autorefresh:
            static_file = await sync_to_async(self.find_file, thread_sensitive=False)(request.path_info)
        else:
            static_file = self.files.get(request.path_info)
        if static_file is None:
            return await self.get_response(request)
        return await sync_to_async(self._read, thread_sensitive=False)(static_file, request)

    def _read(self, static_file, request) -> HttpResponse:
        streamed = self.serve(static_file, request)
        try:
            body = b"".join(streamed.streaming_content)
        finally:
            streamed.close()
        answer = HttpResponse(body, status=streamed.status_code)
        del answer["Content-Type"]
        for name, value in streamed.items():
            answer[name] = value
        return answer
