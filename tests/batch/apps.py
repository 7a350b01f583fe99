from django.apps import AppConfig


class BatchTestsConfig(AppConfig):
    name = "tests.batch"
    label = "batchtests"
