DROP TABLE rollup_watermark;
