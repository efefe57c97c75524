"""The chat page at GET /, in headless Chromium (Debian's chromium + chromium-driver, driven by Selenium): one text
and one image exchange stream their answers into the page, with the VisionZip numbers under the second one. The
screenshot is kept in .build/serve-test/page.png."""
import shutil

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from conftest import FIXTURES


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.fail("no Chromium: tools/setup.sh --dev installs Debian's chromium and chromium-driver")


def test_page_streams_text_and_image_answers(start_server, llava, results):
    text, mmproj = llava
    server = start_server("-m", text, "--mmproj", mmproj, "--max-tokens", "64")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1000,800"):
        options.add_argument(flag)
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    browser = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        browser.get(server.url + "/")
        wait = WebDriverWait(browser, 60)
        wait.until(lambda b: "context" in b.find_element(By.ID, "model").text)
        browser.find_element(By.ID, "max-tokens").clear()
        browser.find_element(By.ID, "max-tokens").send_keys("12")
        browser.find_element(By.ID, "temperature").clear()
        browser.find_element(By.ID, "temperature").send_keys("0")
        browser.find_element(By.ID, "prompt").send_keys("Hello, who are you?")
        browser.find_element(By.ID, "send").click()
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, ".assistant .stats")) == 1)
        browser.find_element(By.ID, "image").send_keys(str(FIXTURES / "images" / "photo64x48_444.jpg"))
        wait.until(lambda b: "attached" in b.find_element(By.ID, "attached").text)
        browser.find_element(By.ID, "prompt").send_keys("What is in this picture?")
        browser.find_element(By.ID, "send").click()
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, ".assistant .stats")) == 2)
        answers = browser.find_elements(By.CSS_SELECTOR, ".assistant .text")
        stats = browser.find_elements(By.CSS_SELECTOR, ".assistant .stats")
        assert len(answers) == 2 and all(a.text for a in answers), [a.text for a in answers]
        assert "VisionZip" in stats[1].text and "from the cache" in stats[1].text, stats[1].text
        assert not browser.find_elements(By.CSS_SELECTOR, ".error")
        assert len(browser.find_elements(By.CSS_SELECTOR, ".user img")) == 1
        browser.save_screenshot(str(results / "page.png"))
    finally:
        browser.quit()
