"""The ECG report as documents: PDF (pdf.py), FHIR R4 bundle (fhir.py), HL7 v2.5 ORU^R01 (hl7.py), all built from
one ReportData (data.py), which selectors.report_data assembles from a stored result."""
