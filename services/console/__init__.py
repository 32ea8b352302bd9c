"""The responder console: incidents, queues and feedback as web pages, read from Kafka."""
