DROP TABLE leases;
DROP TABLE anomalies;
