DROP TABLE anomaly_detector_state;
