from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
from brokerthread import BrokerThread


def test_paho_pub_sub_v311_and_v5(broker_thread: BrokerThread, unique_topic: str) -> None:
    for version in (mqtt.MQTTv311, mqtt.MQTTv5):
        got: list[tuple[str, bytes, int]] = []
        done = threading.Event()
        sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"s{version}", protocol=version)

        def on_message(c: object, u: object, m: mqtt.MQTTMessage) -> None:
            got.append((m.topic, m.payload, m.qos))
            if len(got) == 3:
                done.set()

        sub.on_message = on_message
        sub.connect("127.0.0.1", broker_thread.port)
        sub.loop_start()
        sub.subscribe(unique_topic + "/#", qos=2)[1]
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"p{version}", protocol=version)
        pub.connect("127.0.0.1", broker_thread.port)
        pub.loop_start()
        import time

        time.sleep(0.2)
        for qos in (0, 1, 2):
            pub.publish(f"{unique_topic}/x", f"m{qos}".encode(), qos=qos).wait_for_publish(5)
        assert done.wait(5), got
        assert got == [(f"{unique_topic}/x", f"m{q}".encode(), q) for q in (0, 1, 2)]
        for c in (sub, pub):
            c.disconnect()
            c.loop_stop()
