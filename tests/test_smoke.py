from conftest import login, post


def test_patient_logs_in_and_sees_home(client, patient):
    login(client, patient)
    page = client.get("/home")
    assert page.status_code == 200
    assert "Pat Quinn" in page.get_data(as_text=True)


def test_logout(as_patient):
    response = post(as_patient, "/logout", token_from="/home")
    assert response.status_code == 303
    assert as_patient.get("/home").status_code == 302
