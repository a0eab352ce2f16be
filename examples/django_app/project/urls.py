from django.urls import path

from tickets import views

urlpatterns = [
    path("tickets", views.submit_ticket, name="submit-ticket"),
    path("tickets/<str:request_id>", views.get_ticket, name="get-ticket"),
    path("tickets/<str:request_id>/wait", views.wait_ticket, name="wait-ticket"),
]
