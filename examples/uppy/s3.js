// Uppy's S3 plugin (@uppy/aws-s3) against the API's Companion-style S3 endpoints (/s3/...): the API creates each
// upload, signs its part URLs and completes it; the browser PUTs the parts (or POSTs a small file) straight to S3.
import { AwsS3 } from 'uppy';

export function s3(uppy, { api }) {
  // 6.x names the option `companionEndpoint`; 5.x called it `endpoint`. The paths are the same.
  const major = Number(AwsS3.VERSION.split('.')[0]);
  const endpoint = major >= 6 ? { companionEndpoint: api } : { endpoint: api };
  uppy.use(AwsS3, {
    ...endpoint,
    // Multipart for every file S3 takes in parts (over 5 MiB): parts resume after a cut, and go up in any size.
    // Smaller files go in one POST with a form from GET /s3/params.
    shouldUseMultipart: true,
  });
}
