from django.contrib.auth.decorators import login_not_required
from django.urls import path
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView


class FixedAnswer(APIView):
    """Answers without authenticating or reading the body: no database, no validation."""

    authentication_classes = []
    permission_classes = [AllowAny]

    def post(self, request):
        return Response({"accepted": 0, "rejected": []})


urlpatterns = [path("baseline", login_not_required(FixedAnswer.as_view()))]
