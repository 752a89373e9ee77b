"""Hospital data in and out: FHIR R4, HL7 v2, and the identity link table at the door."""
