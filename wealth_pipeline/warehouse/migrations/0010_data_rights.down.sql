-- Undo 0010: lineage, export audit and entitlements go.
DROP TABLE ref.entitlements;
DROP TABLE ops.exports;
DROP TABLE ops.lineage;
