"""Developer tooling the services never run: the local Kafka broker harness and the protobuf build."""
