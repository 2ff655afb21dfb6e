"""The OpenAPI document of the ingress: what Onoff may send and every answer it can get."""

from __future__ import annotations

from typing import Any

_NULLABLE_STRING = {"type": "string", "nullable": True}
_TIMESTAMP = {"type": "string", "format": "date-time", "nullable": True}
_SECONDS = {"type": "integer", "maximum": 2**63 - 1, "minimum": -(2**63), "nullable": True}

_PARTY = {
    "eventName": _NULLABLE_STRING,
    "onoffUserName": _NULLABLE_STRING,
    "onoffUserEmail": _NULLABLE_STRING,
    "onoffUserNumber": _NULLABLE_STRING,
    "externalNumber": _NULLABLE_STRING,
    "externalName": _NULLABLE_STRING,
    "externalEmail": _NULLABLE_STRING,
}

_CALL = {
    "type": "object",
    "required": ["id"],
    "additionalProperties": True,
    "properties": {
        "id": {"type": "string", "minLength": 1},
        **_PARTY,
        "callStarted": _TIMESTAMP,
        "callEnded": _TIMESTAMP,
        "callDuration": _SECONDS,
        "callDirection": {**_NULLABLE_STRING, "example": "INBOUND"},
        "callStatus": {**_NULLABLE_STRING, "example": "ANSWERED"},
        "callNotes": _NULLABLE_STRING,
        "voicemailUrl": _NULLABLE_STRING,
        "voicemailDuration": _SECONDS,
        "callRecordingUrl": _NULLABLE_STRING,
        "tags": {
            "type": "array",
            "nullable": True,
            "items": {
                "type": "object",
                "properties": {
                    "tagId": _NULLABLE_STRING,
                    "tagName": _NULLABLE_STRING,
                    "tagColor": _NULLABLE_STRING,
                },
            },
        },
    },
}

_SMS = {
    "type": "object",
    "required": ["id"],
    "additionalProperties": True,
    "properties": {
        "id": {"type": "string", "minLength": 1},
        **_PARTY,
        "date": _TIMESTAMP,
        "smsDirection": {**_NULLABLE_STRING, "example": "RECEIVED"},
        "body": _NULLABLE_STRING,
    },
}


def _error(description: str, retry_after: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {
            "application/json": {
                "schema": {"type": "object", "properties": {"error": {"type": "string"}}}
            }
        },
    }
    if retry_after:
        response["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
    return response


def _webhook(summary: str, schema: dict[str, Any], max_body_bytes: int) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "security": [{"apiKey": []}, {"bearer": []}],
            "requestBody": {
                "required": True,
                "description": f"One JSON object, at most {max_body_bytes} bytes.",
                "content": {"application/json": {"schema": schema}},
            },
            "responses": {
                "200": {
                    "description": "Stored in Kafka (`{}`), or quarantined in the dead-letter "
                    'topic (`{"status": "quarantined", "reason": ...}`).',
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "status": {"type": "string", "enum": ["quarantined"]},
                                    "reason": {"type": "string"},
                                },
                            }
                        }
                    },
                },
                "401": _error("Missing or wrong API key; nothing stored."),
                "413": _error("Body too large; nothing stored."),
                "422": _error("Quarantined (when configured to answer 422 instead of 200)."),
                "503": _error("Not stored (Kafka or the registry unavailable); retry.", True),
            },
        }
    }


def openapi_document(max_body_bytes: int) -> dict[str, Any]:
    probe = {
        "description": "Alive",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "onoff-kafka-bridge ingress",
            "version": "1",
            "description": "Receives Onoff Business webhooks; answers once Kafka has each.",
        },
        "components": {
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                "bearer": {"type": "http", "scheme": "bearer"},
            }
        },
        "paths": {
            "/v1/onoff/cdr": _webhook("A call, voicemail or recording log", _CALL, max_body_bytes),
            "/v1/onoff/sms": _webhook("An SMS log", _SMS, max_body_bytes),
            "/healthz": {"get": {"summary": "Process alive", "responses": {"200": probe}}},
            "/readyz": {
                "get": {
                    "summary": "Kafka reachable and schemas registered",
                    "responses": {"200": probe, "503": _error("Not ready", True)},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {"200": {"description": "Metrics", "content": {"text/plain": {}}}},
                }
            },
        },
    }
