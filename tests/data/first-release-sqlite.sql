-- A SQLite database made by the first release's create_all, with a few rows: the schema-upgrade tests start from it.
BEGIN TRANSACTION;
CREATE TABLE attempt_counters (
	"key" VARCHAR(128) NOT NULL, 
	last_at DATETIME NOT NULL, 
	count INTEGER NOT NULL, 
	PRIMARY KEY ("key")
);
CREATE TABLE audit_events (
	id INTEGER NOT NULL, 
	at DATETIME NOT NULL, 
	event VARCHAR(40) NOT NULL, 
	result VARCHAR(20) NOT NULL, 
	reason VARCHAR(60), 
	username VARCHAR(256), 
	sp_entity_id VARCHAR(1024), 
	client_ip VARCHAR(64), 
	detail TEXT, 
	PRIMARY KEY (id)
);
INSERT INTO "audit_events" VALUES(1,'2026-12-01 18:47:59.059986','signin','success',NULL,'alice','https://mail.example.test','10.0.0.7',NULL);
INSERT INTO "audit_events" VALUES(2,'2026-12-01 18:47:59.060366','signin','failure','invalid_credentials','bob',NULL,'10.0.0.8',NULL);
CREATE TABLE provisioning_outbox (
	id INTEGER NOT NULL, 
	guid VARCHAR(36) NOT NULL, 
	username VARCHAR(256) NOT NULL, 
	spec JSON NOT NULL, 
	fingerprint VARCHAR(64) NOT NULL, 
	enqueued_at DATETIME NOT NULL, 
	state VARCHAR(20) NOT NULL, 
	version INTEGER NOT NULL, 
	attempts INTEGER NOT NULL, 
	next_attempt_at DATETIME NOT NULL, 
	last_error TEXT, 
	lease_owner VARCHAR(200), 
	lease_expires_at DATETIME, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (guid)
);
CREATE TABLE provisioning_records (
	guid VARCHAR(36) NOT NULL, 
	username VARCHAR(256) NOT NULL, 
	email VARCHAR(320) NOT NULL, 
	mailbox_id VARCHAR(256), 
	fingerprint VARCHAR(64) NOT NULL, 
	frozen BOOLEAN NOT NULL, 
	frozen_at DATETIME, 
	last_error TEXT, 
	failed_action VARCHAR(20), 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (guid)
);
INSERT INTO "provisioning_records" VALUES('6f1c2f9e-3d1a-4c55-9a7e-0b7d2e9c1a11','alice','alice@example.test','u-1','abc',0,NULL,NULL,NULL,'2026-11-30 10:00:00');
CREATE TABLE saml_seen_requests (
	issuer VARCHAR(1024) NOT NULL, 
	request_id VARCHAR(256) NOT NULL, 
	expires_at DATETIME NOT NULL, 
	PRIMARY KEY (issuer, request_id)
);
CREATE TABLE sp_metadata_urls (
	entity_id VARCHAR(1024) NOT NULL, 
	url TEXT NOT NULL, 
	pinned_cert TEXT, 
	allow_http BOOLEAN DEFAULT 0 NOT NULL, 
	last_fetched_at DATETIME, 
	last_success_at DATETIME, 
	last_changed_at DATETIME, 
	next_refresh_at DATETIME NOT NULL, 
	failures INTEGER NOT NULL, 
	last_error TEXT, 
	last_error_reason VARCHAR(60), 
	PRIMARY KEY (entity_id)
);
CREATE TABLE sp_policies (
	entity_id VARCHAR(1024) NOT NULL, 
	policy JSON NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (entity_id)
);
INSERT INTO "sp_policies" VALUES('https://mail.example.test','{"enabled": true, "attributes": ["mail"]}','2026-11-30 10:00:00');
CREATE TABLE sso_sessions (
	session_index VARCHAR(64) NOT NULL, 
	username VARCHAR(256) NOT NULL, 
	started_at DATETIME NOT NULL, 
	checked_at DATETIME NOT NULL, 
	expires_at DATETIME NOT NULL, 
	client_ip VARCHAR(64), 
	sps JSON NOT NULL, 
	revoked_at DATETIME, 
	revoked_by VARCHAR(256), 
	PRIMARY KEY (session_index)
);
CREATE TABLE sync_leases (
	name VARCHAR(60) NOT NULL, 
	holder VARCHAR(200) NOT NULL, 
	expires_at DATETIME NOT NULL, 
	PRIMARY KEY (name)
);
CREATE TABLE sync_watermarks (
	dc VARCHAR(512) NOT NULL, 
	usn BIGINT NOT NULL, 
	at DATETIME NOT NULL, 
	PRIMARY KEY (dc)
);
CREATE INDEX ix_audit_user_at ON audit_events (username, at);
CREATE INDEX ix_audit_events_at ON audit_events (at);
CREATE INDEX ix_audit_fail_user_at ON audit_events (username, at) WHERE event = 'signin' AND result = 'failure';
CREATE INDEX ix_audit_sp_at ON audit_events (sp_entity_id, at);
CREATE INDEX ix_audit_fail_ip_at ON audit_events (client_ip, at) WHERE event = 'signin' AND result = 'failure';
CREATE INDEX ix_provisioning_records_username ON provisioning_records (username);
CREATE INDEX ix_provisioning_outbox_state ON provisioning_outbox (state);
CREATE INDEX ix_saml_seen_requests_expires_at ON saml_seen_requests (expires_at);
CREATE INDEX ix_sp_metadata_urls_next_refresh_at ON sp_metadata_urls (next_refresh_at);
CREATE INDEX ix_sso_sessions_expires_at ON sso_sessions (expires_at);
CREATE INDEX ix_sso_sessions_username ON sso_sessions (username);
COMMIT;
