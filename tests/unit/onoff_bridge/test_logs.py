import io
import logging
import logging.config

import orjson

from onoff_bridge.logs import logging_config


def test_the_dict_config_writes_one_json_object_per_line_with_the_extra_fields() -> None:
    config = logging_config("INFO", json=True)
    stream = io.StringIO()
    config["handlers"]["stderr"]["stream"] = stream
    logging.config.dictConfig(config)
    try:
        logging.getLogger("faust.worker").info("started %s", "dedupe", extra={"partition": 3})
        logging.getLogger("httpx").info("chatty")  # quietened
    finally:
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
    [line] = stream.getvalue().splitlines()
    entry = orjson.loads(line)
    assert entry["msg"] == "started dedupe"
    assert entry["logger"] == "faust.worker"
    assert entry["partition"] == 3
    assert entry["ts"].endswith("Z")
