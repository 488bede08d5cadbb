"""Site sensors: the distributed mode on Celery and RabbitMQ (SCALE-OUT.md)."""
