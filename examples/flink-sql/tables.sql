-- onoff.calls and onoff.user-call-metrics as Flink SQL tables (Flink 1.17+, with the
-- flink-sql-connector-kafka and flink-sql-avro-confluent-registry jars).
--
-- Both topics are compacted and keyed: upsert-kafka turns them into tables whose rows
-- are the current call and the current window. The value columns must follow the Avro
-- schema's field order and types (schemas/avro/call.avsc, user_call_metrics.avsc);
-- Avro timestamp-millis is TIMESTAMP_LTZ(3), Avro long is BIGINT.
-- For a secured cluster add 'properties.security.protocol' = 'SASL_SSL',
-- 'properties.sasl.mechanism' = 'SCRAM-SHA-512', 'properties.sasl.jaas.config' = '...',
-- and 'value.avro-confluent.basic-auth.credentials-source' / '.user-info' for the registry.

CREATE TABLE onoff_calls (
  call_key            STRING,
  id                  STRING,
  version             BIGINT,
  eventKinds          ARRAY<STRING NOT NULL> NOT NULL,
  onoffUserName       STRING,
  onoffUserEmail      STRING,
  onoffUserNumber     STRING,
  externalNumber      STRING,
  externalName        STRING,
  externalEmail       STRING,
  callStarted         TIMESTAMP_LTZ(3),
  callEnded           TIMESTAMP_LTZ(3),
  callDuration        BIGINT,
  callDirection       STRING,
  callStatus          STRING,
  callNotes           STRING,
  voicemailDuration   BIGINT,
  callRecordingUrls   ARRAY<STRING NOT NULL> NOT NULL,
  voicemailUrls       ARRAY<STRING NOT NULL> NOT NULL,
  tags                ARRAY<ROW<tagId STRING, tagName STRING, tagColor STRING> NOT NULL> NOT NULL,
  extraJson           STRING,
  deliveryCount       BIGINT NOT NULL,
  firstSeenAt         TIMESTAMP_LTZ(3) NOT NULL,
  lastUpdatedAt       TIMESTAMP_LTZ(3) NOT NULL,
  deliveryHashes      ARRAY<STRING NOT NULL> NOT NULL,
  PRIMARY KEY (call_key) NOT ENFORCED
) WITH (
  'connector' = 'upsert-kafka',
  'topic' = 'onoff.calls',
  'properties.bootstrap.servers' = '127.0.0.1:9092',
  'key.format' = 'raw',
  'key.fields-prefix' = 'call_',
  'value.format' = 'avro-confluent',
  'value.avro-confluent.url' = 'http://127.0.0.1:8081/apis/ccompat/v7',
  'value.fields-include' = 'EXCEPT_KEY'
);

CREATE TABLE onoff_user_call_metrics (
  window_key          STRING,
  userKey             STRING NOT NULL,
  granularity         STRING NOT NULL,
  windowStart         TIMESTAMP_LTZ(3) NOT NULL,
  windowEnd           TIMESTAMP_LTZ(3) NOT NULL,
  callsTotal          BIGINT NOT NULL,
  inbound             BIGINT NOT NULL,
  outbound            BIGINT NOT NULL,
  answered            BIGINT NOT NULL,
  missed              BIGINT NOT NULL,
  voicemails          BIGINT NOT NULL,
  recorded            BIGINT NOT NULL,
  talkSecondsTotal    BIGINT NOT NULL,
  talkSecondsAvg      DOUBLE NOT NULL,
  talkSecondsMax      BIGINT NOT NULL,
  lastUpdatedAt       TIMESTAMP_LTZ(3) NOT NULL,
  PRIMARY KEY (window_key) NOT ENFORCED
) WITH (
  'connector' = 'upsert-kafka',
  'topic' = 'onoff.user-call-metrics',
  'properties.bootstrap.servers' = '127.0.0.1:9092',
  'key.format' = 'raw',
  'key.fields-prefix' = 'window_',
  'value.format' = 'avro-confluent',
  'value.avro-confluent.url' = 'http://127.0.0.1:8081/apis/ccompat/v7',
  'value.fields-include' = 'EXCEPT_KEY'
);

-- Answered calls per user and day, from the current state of every call:
-- SELECT onoffUserEmail, CAST(callStarted AS DATE) AS day, COUNT(*) AS answered
-- FROM onoff_calls WHERE callStatus = 'ANSWERED' GROUP BY onoffUserEmail, CAST(callStarted AS DATE);
