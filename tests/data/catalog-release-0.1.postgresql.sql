--
-- PostgreSQL database dump
--


-- Dumped from database version 15.18 (Debian 15.18-0+deb12u1)
-- Dumped by pg_dump version 15.18 (Debian 15.18-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: associations; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.associations (
    id integer NOT NULL,
    direction character varying(8) NOT NULL,
    calling_ae character varying(16) NOT NULL,
    called_ae character varying(16) NOT NULL,
    peer_host character varying(64) NOT NULL,
    peer_port integer NOT NULL,
    tls boolean NOT NULL,
    started_at timestamp with time zone NOT NULL,
    ended_at timestamp with time zone,
    result character varying(32) NOT NULL,
    reason text,
    instances_received integer NOT NULL,
    instances_failed integer NOT NULL,
    bytes_received bigint NOT NULL
);


--
-- Name: associations_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.associations_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: associations_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.associations_id_seq OWNED BY public.associations.id;


--
-- Name: deliveries; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.deliveries (
    id integer NOT NULL,
    study_id integer NOT NULL,
    report_key character varying(64) NOT NULL,
    destination character varying(64) NOT NULL,
    kind character varying(16) NOT NULL,
    files text NOT NULL,
    state character varying(16) NOT NULL,
    attempts integer NOT NULL,
    max_attempts integer NOT NULL,
    last_error text,
    next_attempt_at timestamp with time zone NOT NULL,
    created_at timestamp with time zone NOT NULL,
    updated_at timestamp with time zone NOT NULL,
    delivered_at timestamp with time zone
);


--
-- Name: deliveries_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.deliveries_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: deliveries_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.deliveries_id_seq OWNED BY public.deliveries.id;


--
-- Name: instances; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.instances (
    id integer NOT NULL,
    series_id integer NOT NULL,
    sop_instance_uid character varying(64) NOT NULL,
    sop_class_uid character varying(64) NOT NULL,
    transfer_syntax_uid character varying(64) NOT NULL,
    image_flavor character varying(16),
    pixel_spacing_um double precision,
    version integer NOT NULL,
    current boolean NOT NULL,
    path text NOT NULL,
    size bigint NOT NULL,
    sha256 character varying(64) NOT NULL,
    received_at timestamp with time zone NOT NULL,
    association_id integer
);


--
-- Name: instances_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.instances_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: instances_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.instances_id_seq OWNED BY public.instances.id;


--
-- Name: jobs; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.jobs (
    id integer NOT NULL,
    study_id integer NOT NULL,
    kind character varying(16) NOT NULL,
    state character varying(16) NOT NULL,
    attempts integer NOT NULL,
    max_attempts integer NOT NULL,
    lease_owner character varying(128),
    lease_expires_at timestamp with time zone,
    next_attempt_at timestamp with time zone NOT NULL,
    last_error text,
    created_at timestamp with time zone NOT NULL,
    updated_at timestamp with time zone NOT NULL,
    finished_at timestamp with time zone
);


--
-- Name: jobs_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.jobs_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: jobs_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.jobs_id_seq OWNED BY public.jobs.id;


--
-- Name: observations; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.observations (
    id character varying(64) NOT NULL,
    study_id integer NOT NULL,
    patient_system character varying(200) NOT NULL,
    patient_value character varying(64) NOT NULL,
    code_system character varying(200) NOT NULL,
    code character varying(64) NOT NULL,
    resource text NOT NULL,
    created_at timestamp with time zone NOT NULL
);


--
-- Name: pull_cursors; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.pull_cursors (
    pacs character varying(64) NOT NULL,
    last_success_at timestamp with time zone NOT NULL,
    last_attempt_at timestamp with time zone,
    last_error text
);


--
-- Name: schema_version; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.schema_version (
    version integer NOT NULL,
    description character varying(200) NOT NULL,
    applied_at timestamp with time zone NOT NULL
);


--
-- Name: schema_version_version_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.schema_version_version_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: schema_version_version_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.schema_version_version_seq OWNED BY public.schema_version.version;


--
-- Name: series; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.series (
    id integer NOT NULL,
    study_id integer NOT NULL,
    series_uid character varying(64) NOT NULL,
    modality character varying(16),
    sop_class_uid character varying(64) NOT NULL,
    instance_count integer NOT NULL,
    finest_volume_mpp double precision,
    first_received_at timestamp with time zone NOT NULL,
    last_received_at timestamp with time zone NOT NULL
);


--
-- Name: series_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.series_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: series_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.series_id_seq OWNED BY public.series.id;


--
-- Name: studies; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.studies (
    id integer NOT NULL,
    study_uid character varying(64) NOT NULL,
    accession_number character varying(64),
    state character varying(16) NOT NULL,
    state_reason text,
    forced boolean NOT NULL,
    first_received_at timestamp with time zone NOT NULL,
    last_received_at timestamp with time zone NOT NULL,
    completed_at timestamp with time zone,
    scored_at timestamp with time zone,
    updated_at timestamp with time zone NOT NULL,
    result_path text,
    result_call character varying(16),
    result_probability double precision,
    model_key character varying(160),
    hold_reason text
);


--
-- Name: studies_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.studies_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: studies_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.studies_id_seq OWNED BY public.studies.id;


--
-- Name: associations id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.associations ALTER COLUMN id SET DEFAULT nextval('public.associations_id_seq'::regclass);


--
-- Name: deliveries id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.deliveries ALTER COLUMN id SET DEFAULT nextval('public.deliveries_id_seq'::regclass);


--
-- Name: instances id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.instances ALTER COLUMN id SET DEFAULT nextval('public.instances_id_seq'::regclass);


--
-- Name: jobs id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.jobs ALTER COLUMN id SET DEFAULT nextval('public.jobs_id_seq'::regclass);


--
-- Name: schema_version version; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.schema_version ALTER COLUMN version SET DEFAULT nextval('public.schema_version_version_seq'::regclass);


--
-- Name: series id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.series ALTER COLUMN id SET DEFAULT nextval('public.series_id_seq'::regclass);


--
-- Name: studies id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.studies ALTER COLUMN id SET DEFAULT nextval('public.studies_id_seq'::regclass);


--
-- Data for Name: associations; Type: TABLE DATA; Schema: public; Owner: -
--



--
-- Data for Name: deliveries; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.deliveries VALUES (1, 1, 'kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk', 'pacs', 'dicom', '["sr.dcm"]', 'pending', 0, 8, NULL, '2026-11-28 06:10:56.540394+00', '2026-11-28 06:10:56.54123+00', '2026-11-28 06:10:56.541232+00', NULL);


--
-- Data for Name: instances; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.instances VALUES (1, 1, '1.2.826.0.1.3680043.8.498.1.1.1', '1.2.840.10008.5.1.4.1.1.77.1.6', '1.2.840.10008.1.2.4.50', 'VOLUME', 0.25, 1, true, '/spool/1.2.826.0.1.3680043.8.498.1/x.dcm', 1000, 'abababababababababababababababababababababababababababababababab', '2026-11-28 06:10:56.473537+00', NULL);
INSERT INTO public.instances VALUES (2, 2, '1.2.826.0.1.3680043.8.498.2.1.1', '1.2.840.10008.5.1.4.1.1.77.1.6', '1.2.840.10008.1.2.4.50', 'VOLUME', 0.25, 1, true, '/spool/1.2.826.0.1.3680043.8.498.2/x.dcm', 1000, 'abababababababababababababababababababababababababababababababab', '2026-11-28 06:10:56.54284+00', NULL);


--
-- Data for Name: jobs; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.jobs VALUES (1, 1, 'score', 'done', 1, 3, NULL, '2026-11-28 06:11:56.516665+00', '2026-11-28 06:10:56.513946+00', NULL, '2026-11-28 06:10:56.514755+00', '2026-11-28 06:10:56.531839+00', '2026-11-28 06:10:56.528922+00');


--
-- Data for Name: observations; Type: TABLE DATA; Schema: public; Owner: -
--



--
-- Data for Name: pull_cursors; Type: TABLE DATA; Schema: public; Owner: -
--



--
-- Data for Name: schema_version; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.schema_version VALUES (1, 'initial schema: studies, series, instances, associations, jobs', '2026-11-28 06:10:56.444086+00');
INSERT INTO public.schema_version VALUES (2, 'deliveries and FHIR observations', '2026-11-28 06:10:56.457559+00');
INSERT INTO public.schema_version VALUES (3, 'retrieve holds and auto-pull cursors', '2026-11-28 06:10:56.472735+00');


--
-- Data for Name: series; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.series VALUES (1, 1, '1.2.826.0.1.3680043.8.498.1.1', 'SM', '1.2.840.10008.5.1.4.1.1.77.1.6', 1, 0.25, '2026-11-28 06:10:56.473537+00', '2026-11-28 06:10:56.473537+00');
INSERT INTO public.series VALUES (2, 2, '1.2.826.0.1.3680043.8.498.2.1', 'SM', '1.2.840.10008.5.1.4.1.1.77.1.6', 1, 0.25, '2026-11-28 06:10:56.54284+00', '2026-11-28 06:10:56.54284+00');


--
-- Data for Name: studies; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.studies VALUES (1, '1.2.826.0.1.3680043.8.498.1', 'ACC0', 'scored', NULL, false, '2026-11-28 06:10:56.473537+00', '2026-11-28 06:10:56.473537+00', '2026-11-28 06:10:56.509522+00', '2026-11-28 06:10:56.533949+00', '2026-11-28 06:10:56.534815+00', '/outbox/1.2.826.0.1.3680043.8.498.1/result.json', 'hrd-negative', 0.12, 'model-key', NULL);
INSERT INTO public.studies VALUES (2, '1.2.826.0.1.3680043.8.498.2', 'ACC1', 'receiving', NULL, false, '2026-11-28 06:10:56.54284+00', '2026-11-28 06:10:56.54284+00', NULL, NULL, '2026-11-28 06:10:56.544342+00', NULL, NULL, NULL, NULL, NULL);


--
-- Name: associations_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.associations_id_seq', 1, false);


--
-- Name: deliveries_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.deliveries_id_seq', 1, true);


--
-- Name: instances_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.instances_id_seq', 2, true);


--
-- Name: jobs_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.jobs_id_seq', 1, true);


--
-- Name: schema_version_version_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.schema_version_version_seq', 1, false);


--
-- Name: series_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.series_id_seq', 2, true);


--
-- Name: studies_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.studies_id_seq', 2, true);


--
-- Name: associations associations_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.associations
    ADD CONSTRAINT associations_pkey PRIMARY KEY (id);


--
-- Name: deliveries deliveries_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.deliveries
    ADD CONSTRAINT deliveries_pkey PRIMARY KEY (id);


--
-- Name: deliveries deliveries_report_key_destination_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.deliveries
    ADD CONSTRAINT deliveries_report_key_destination_key UNIQUE (report_key, destination);


--
-- Name: instances instances_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.instances
    ADD CONSTRAINT instances_pkey PRIMARY KEY (id);


--
-- Name: instances instances_sop_instance_uid_version_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.instances
    ADD CONSTRAINT instances_sop_instance_uid_version_key UNIQUE (sop_instance_uid, version);


--
-- Name: jobs jobs_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.jobs
    ADD CONSTRAINT jobs_pkey PRIMARY KEY (id);


--
-- Name: observations observations_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.observations
    ADD CONSTRAINT observations_pkey PRIMARY KEY (id);


--
-- Name: pull_cursors pull_cursors_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.pull_cursors
    ADD CONSTRAINT pull_cursors_pkey PRIMARY KEY (pacs);


--
-- Name: schema_version schema_version_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.schema_version
    ADD CONSTRAINT schema_version_pkey PRIMARY KEY (version);


--
-- Name: series series_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.series
    ADD CONSTRAINT series_pkey PRIMARY KEY (id);


--
-- Name: studies studies_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.studies
    ADD CONSTRAINT studies_pkey PRIMARY KEY (id);


--
-- Name: ix_deliveries_destination; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_deliveries_destination ON public.deliveries USING btree (destination);


--
-- Name: ix_deliveries_next_attempt_at; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_deliveries_next_attempt_at ON public.deliveries USING btree (next_attempt_at);


--
-- Name: ix_deliveries_state; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_deliveries_state ON public.deliveries USING btree (state);


--
-- Name: ix_deliveries_study_id; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_deliveries_study_id ON public.deliveries USING btree (study_id);


--
-- Name: ix_instances_series_id; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_instances_series_id ON public.instances USING btree (series_id);


--
-- Name: ix_instances_sop_instance_uid; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_instances_sop_instance_uid ON public.instances USING btree (sop_instance_uid);


--
-- Name: ix_jobs_next_attempt_at; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_jobs_next_attempt_at ON public.jobs USING btree (next_attempt_at);


--
-- Name: ix_jobs_state; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_jobs_state ON public.jobs USING btree (state);


--
-- Name: ix_jobs_study_id; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_jobs_study_id ON public.jobs USING btree (study_id);


--
-- Name: ix_observations_code; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_observations_code ON public.observations USING btree (code);


--
-- Name: ix_observations_patient_system; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_observations_patient_system ON public.observations USING btree (patient_system);


--
-- Name: ix_observations_patient_value; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_observations_patient_value ON public.observations USING btree (patient_value);


--
-- Name: ix_observations_study_id; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_observations_study_id ON public.observations USING btree (study_id);


--
-- Name: ix_series_series_uid; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX ix_series_series_uid ON public.series USING btree (series_uid);


--
-- Name: ix_series_study_id; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_series_study_id ON public.series USING btree (study_id);


--
-- Name: ix_studies_state; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_studies_state ON public.studies USING btree (state);


--
-- Name: ix_studies_study_uid; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX ix_studies_study_uid ON public.studies USING btree (study_uid);


--
-- Name: deliveries deliveries_study_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.deliveries
    ADD CONSTRAINT deliveries_study_id_fkey FOREIGN KEY (study_id) REFERENCES public.studies(id);


--
-- Name: instances instances_association_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.instances
    ADD CONSTRAINT instances_association_id_fkey FOREIGN KEY (association_id) REFERENCES public.associations(id);


--
-- Name: instances instances_series_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.instances
    ADD CONSTRAINT instances_series_id_fkey FOREIGN KEY (series_id) REFERENCES public.series(id);


--
-- Name: jobs jobs_study_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.jobs
    ADD CONSTRAINT jobs_study_id_fkey FOREIGN KEY (study_id) REFERENCES public.studies(id);


--
-- Name: observations observations_study_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.observations
    ADD CONSTRAINT observations_study_id_fkey FOREIGN KEY (study_id) REFERENCES public.studies(id);


--
-- Name: series series_study_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.series
    ADD CONSTRAINT series_study_id_fkey FOREIGN KEY (study_id) REFERENCES public.studies(id);


--
-- PostgreSQL database dump complete
--


