PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
CREATE TABLE schema_version (
	version INTEGER NOT NULL, 
	description VARCHAR(200) NOT NULL, 
	applied_at DATETIME NOT NULL, 
	PRIMARY KEY (version)
);
INSERT INTO schema_version VALUES(1,'initial schema: studies, series, instances, associations, jobs','2026-11-28 06:10:41.452848');
INSERT INTO schema_version VALUES(2,'deliveries and FHIR observations','2026-11-28 06:10:41.484540');
INSERT INTO schema_version VALUES(3,'retrieve holds and auto-pull cursors','2026-11-28 06:10:41.491093');
CREATE TABLE studies (
	id INTEGER NOT NULL, 
	study_uid VARCHAR(64) NOT NULL, 
	accession_number VARCHAR(64), 
	state VARCHAR(16) NOT NULL, 
	state_reason TEXT, 
	forced BOOLEAN NOT NULL, 
	first_received_at DATETIME NOT NULL, 
	last_received_at DATETIME NOT NULL, 
	completed_at DATETIME, 
	scored_at DATETIME, 
	updated_at DATETIME NOT NULL, 
	result_path TEXT, 
	result_call VARCHAR(16), 
	result_probability FLOAT, 
	model_key VARCHAR(160), 
	hold_reason TEXT, 
	PRIMARY KEY (id)
);
INSERT INTO studies VALUES(1,'1.2.826.0.1.3680043.8.498.1','ACC0','scored',NULL,0,'2026-11-28 06:10:41.497184','2026-11-28 06:10:41.497184','2026-11-28 06:10:41.523775','2026-11-28 06:10:41.556983','2026-11-28 06:10:41.557917','/outbox/1.2.826.0.1.3680043.8.498.1/result.json','hrd-negative',0.11999999999999999555,'model-key',NULL);
INSERT INTO studies VALUES(2,'1.2.826.0.1.3680043.8.498.2','ACC1','receiving',NULL,0,'2026-11-28 06:10:41.564731','2026-11-28 06:10:41.564731',NULL,NULL,'2026-11-28 06:10:41.566062',NULL,NULL,NULL,NULL,NULL);
CREATE TABLE associations (
	id INTEGER NOT NULL, 
	direction VARCHAR(8) NOT NULL, 
	calling_ae VARCHAR(16) NOT NULL, 
	called_ae VARCHAR(16) NOT NULL, 
	peer_host VARCHAR(64) NOT NULL, 
	peer_port INTEGER NOT NULL, 
	tls BOOLEAN NOT NULL, 
	started_at DATETIME NOT NULL, 
	ended_at DATETIME, 
	result VARCHAR(32) NOT NULL, 
	reason TEXT, 
	instances_received INTEGER NOT NULL, 
	instances_failed INTEGER NOT NULL, 
	bytes_received BIGINT NOT NULL, 
	PRIMARY KEY (id)
);
CREATE TABLE series (
	id INTEGER NOT NULL, 
	study_id INTEGER NOT NULL, 
	series_uid VARCHAR(64) NOT NULL, 
	modality VARCHAR(16), 
	sop_class_uid VARCHAR(64) NOT NULL, 
	instance_count INTEGER NOT NULL, 
	finest_volume_mpp FLOAT, 
	first_received_at DATETIME NOT NULL, 
	last_received_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(study_id) REFERENCES studies (id)
);
INSERT INTO series VALUES(1,1,'1.2.826.0.1.3680043.8.498.1.1','SM','1.2.840.10008.5.1.4.1.1.77.1.6',1,0.25,'2026-11-28 06:10:41.497184','2026-11-28 06:10:41.497184');
INSERT INTO series VALUES(2,2,'1.2.826.0.1.3680043.8.498.2.1','SM','1.2.840.10008.5.1.4.1.1.77.1.6',1,0.25,'2026-11-28 06:10:41.564731','2026-11-28 06:10:41.564731');
CREATE TABLE jobs (
	id INTEGER NOT NULL, 
	study_id INTEGER NOT NULL, 
	kind VARCHAR(16) NOT NULL, 
	state VARCHAR(16) NOT NULL, 
	attempts INTEGER NOT NULL, 
	max_attempts INTEGER NOT NULL, 
	lease_owner VARCHAR(128), 
	lease_expires_at DATETIME, 
	next_attempt_at DATETIME NOT NULL, 
	last_error TEXT, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	finished_at DATETIME, 
	PRIMARY KEY (id), 
	FOREIGN KEY(study_id) REFERENCES studies (id)
);
INSERT INTO jobs VALUES(1,1,'score','done',1,3,NULL,'2026-11-28 06:11:41.545267','2026-11-28 06:10:41.539201',NULL,'2026-11-28 06:10:41.540282','2026-11-28 06:10:41.554355','2026-11-28 06:10:41.552940');
CREATE TABLE instances (
	id INTEGER NOT NULL, 
	series_id INTEGER NOT NULL, 
	sop_instance_uid VARCHAR(64) NOT NULL, 
	sop_class_uid VARCHAR(64) NOT NULL, 
	transfer_syntax_uid VARCHAR(64) NOT NULL, 
	image_flavor VARCHAR(16), 
	pixel_spacing_um FLOAT, 
	version INTEGER NOT NULL, 
	current BOOLEAN NOT NULL, 
	path TEXT NOT NULL, 
	size BIGINT NOT NULL, 
	sha256 VARCHAR(64) NOT NULL, 
	received_at DATETIME NOT NULL, 
	association_id INTEGER, 
	PRIMARY KEY (id), 
	UNIQUE (sop_instance_uid, version), 
	FOREIGN KEY(series_id) REFERENCES series (id), 
	FOREIGN KEY(association_id) REFERENCES associations (id)
);
INSERT INTO instances VALUES(1,1,'1.2.826.0.1.3680043.8.498.1.1.1','1.2.840.10008.5.1.4.1.1.77.1.6','1.2.840.10008.1.2.4.50','VOLUME',0.25,1,1,'/spool/1.2.826.0.1.3680043.8.498.1/x.dcm',1000,'abababababababababababababababababababababababababababababababab','2026-11-28 06:10:41.497184',NULL);
INSERT INTO instances VALUES(2,2,'1.2.826.0.1.3680043.8.498.2.1.1','1.2.840.10008.5.1.4.1.1.77.1.6','1.2.840.10008.1.2.4.50','VOLUME',0.25,1,1,'/spool/1.2.826.0.1.3680043.8.498.2/x.dcm',1000,'abababababababababababababababababababababababababababababababab','2026-11-28 06:10:41.564731',NULL);
CREATE TABLE deliveries (
	id INTEGER NOT NULL, 
	study_id INTEGER NOT NULL, 
	report_key VARCHAR(64) NOT NULL, 
	destination VARCHAR(64) NOT NULL, 
	kind VARCHAR(16) NOT NULL, 
	files TEXT NOT NULL, 
	state VARCHAR(16) NOT NULL, 
	attempts INTEGER NOT NULL, 
	max_attempts INTEGER NOT NULL, 
	last_error TEXT, 
	next_attempt_at DATETIME NOT NULL, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	delivered_at DATETIME, 
	PRIMARY KEY (id), 
	UNIQUE (report_key, destination), 
	FOREIGN KEY(study_id) REFERENCES studies (id)
);
INSERT INTO deliveries VALUES(1,1,'kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk','pacs','dicom','["sr.dcm"]','pending',0,8,NULL,'2026-11-28 06:10:41.560803','2026-11-28 06:10:41.561540','2026-11-28 06:10:41.561543',NULL);
CREATE TABLE observations (
	id VARCHAR(64) NOT NULL, 
	study_id INTEGER NOT NULL, 
	patient_system VARCHAR(200) NOT NULL, 
	patient_value VARCHAR(64) NOT NULL, 
	code_system VARCHAR(200) NOT NULL, 
	code VARCHAR(64) NOT NULL, 
	resource TEXT NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(study_id) REFERENCES studies (id)
);
CREATE TABLE pull_cursors (
	pacs VARCHAR(64) NOT NULL, 
	last_success_at DATETIME NOT NULL, 
	last_attempt_at DATETIME, 
	last_error TEXT, 
	PRIMARY KEY (pacs)
);
CREATE INDEX ix_studies_state ON studies (state);
CREATE UNIQUE INDEX ix_studies_study_uid ON studies (study_uid);
CREATE INDEX ix_series_study_id ON series (study_id);
CREATE UNIQUE INDEX ix_series_series_uid ON series (series_uid);
CREATE INDEX ix_jobs_study_id ON jobs (study_id);
CREATE INDEX ix_jobs_next_attempt_at ON jobs (next_attempt_at);
CREATE INDEX ix_jobs_state ON jobs (state);
CREATE INDEX ix_instances_series_id ON instances (series_id);
CREATE INDEX ix_instances_sop_instance_uid ON instances (sop_instance_uid);
CREATE INDEX ix_deliveries_destination ON deliveries (destination);
CREATE INDEX ix_deliveries_next_attempt_at ON deliveries (next_attempt_at);
CREATE INDEX ix_deliveries_study_id ON deliveries (study_id);
CREATE INDEX ix_deliveries_state ON deliveries (state);
CREATE INDEX ix_observations_study_id ON observations (study_id);
CREATE INDEX ix_observations_patient_system ON observations (patient_system);
CREATE INDEX ix_observations_code ON observations (code);
CREATE INDEX ix_observations_patient_value ON observations (patient_value);
COMMIT;
