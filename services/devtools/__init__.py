"""Developer tooling the services never run: the local Kafka broker harness (`kafka_broker.py`), free ports
for it and the tests (`ports.py`), the protobuf build (`protobuild.py`), the whole pipeline on this machine
(`localrun.py`: `make up` / `make down`; `demo.py`: `triage demo`) and the chaos scenarios (`chaos.py`)."""
